//! Throughput bench: a listener and N writers on loopback in one process, printing live
//! messages/s and MB/s once a second and a final summary. Every run counts the received
//! messages and checks their size; a mismatch fails the run.
//!
//! ```text
//! bench --peer buffstreams|framing|tokio|tokio-framing|std-baseline|std-prebuilt[,PEER..]
//!       [--rounds R] [--connections N] [--payload BYTES] [--seconds S] [--flush-every N]
//!       [--batch N] [--json] [--cpu]
//! bench --rtt --peer buffstreams|raw|writer|writer-send [--payload BYTES] [--seconds S]
//!                                                                         round trip p50/p99
//! bench --idle-connections N                                              RSS per idle connection
//! ```
//!
//! Several peers (`--peer tokio,tokio-framing`) run side by side: each in turn, `--rounds`
//! times (default 3, 2 s each), then one table of medians and per-round ratios to the first
//! peer and to tokio-util. Without `--peer` (or with `--peer all`) every throughput peer runs
//! that way, the std baseline first: about 40 s.
//!
//! `framing` sends with the framing crate's unshared `FrameWriter` into the same `Listener`.
//! `tokio` is tokio-util's `Framed` + `LengthDelimitedCodec` on both ends; `tokio-framing` the
//! framing crate's `AsyncFrameWriter` / `AsyncFrameReader` on the same tokio runtime (2 worker
//! threads) through `embedded-io-adapters`, with the same flush policy.
//! `std-baseline` frames every message with a plain `BufWriter` (`write_all` of the 4-byte
//! header, then of the payload) and reads with a `BufReader`; `std-prebuilt` writes one frame
//! built once before the loop (less work than framing each message: a reference, not a peer).
//! `--cpu` prints each thread's CPU time per message at the end of the window.
//!
//! `--flush-every N`: flush after every N messages (1 = after each). Defaults: buffstreams 0
//! (never: the writer's flusher sends on its own), tokio and tokio-framing 64 (`feed` /
//! `write_frame` + `flush` every 64; with 0 each writes when its own buffer is full: 8 KiB for
//! `Framed`, 64 KiB for `AsyncFrameWriter`),
//! std-baseline 0 (a 64 KiB `BufWriter` flushes when full). buffstreams with 1 uses
//! `Writer::send` (write + flush on the caller's thread), tokio with 1 uses `SinkExt::send`.
//! `--batch N` (buffstreams): hand N messages to `Writer::write_batch` per call instead of one
//! `Writer::write` each.

use std::io::{BufReader, BufWriter, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::thread;
use std::time::{Duration, Instant};

use buffstreams_examples::cli;
use buffstreams_framing::{BigEndian, Config, Decoder, Encoder, FrameReader, FrameWriter};
use buffstreams_transport_std::{Listener, ListenerConfig, Writer, WriterConfig};

#[derive(Clone, Debug)]
struct Args {
    peer: String,
    connections: usize,
    payload: usize,
    seconds: u64,
    flush_every: Option<u64>,
    batch: usize,
    json: bool,
    rtt: bool,
    cpu: bool,
    idle_connections: Option<usize>,
    rounds: usize,
}

fn parse() -> Result<Args, String> {
    let mut p = cli::args(USAGE)?;
    let bad = cli::bad(USAGE);
    let a = Args {
        peer: match p.opt_value_from_str::<_, String>("--peer").map_err(&bad)? {
            None => ALL.into(),
            Some(all) if all == "all" => ALL.into(),
            Some(peer) => peer,
        },
        connections: p
            .opt_value_from_str::<_, usize>("--connections")
            .map_err(&bad)?
            .unwrap_or(1)
            .max(1),
        payload: p
            .opt_value_from_str("--payload")
            .map_err(&bad)?
            .unwrap_or(110),
        seconds: p
            .opt_value_from_str::<_, u64>("--seconds")
            .map_err(&bad)?
            .unwrap_or(0),
        flush_every: p.opt_value_from_str("--flush-every").map_err(&bad)?,
        batch: p
            .opt_value_from_str::<_, usize>("--batch")
            .map_err(&bad)?
            .unwrap_or(1)
            .clamp(1, 256),
        json: p.contains("--json"),
        rtt: p.contains("--rtt"),
        cpu: p.contains("--cpu"),
        idle_connections: p.opt_value_from_str("--idle-connections").map_err(&bad)?,
        rounds: p
            .opt_value_from_str::<_, usize>("--rounds")
            .map_err(&bad)?
            .unwrap_or(3)
            .max(1),
    };
    cli::finish(p, USAGE)?;
    let mut a = a;
    // Side by side, each run is shorter: the whole default run stays well under a minute.
    if a.seconds == 0 {
        a.seconds = if a.peer.contains(',') { 2 } else { 5 };
    }
    Ok(a)
}

/// `--peer all`, the default: every throughput peer, the std baseline first (the ratios are to
/// it and to tokio-util).
const ALL: &str = "std-baseline,buffstreams,framing,tokio,tokio-framing";

const USAGE: &str = "bench [--peer all|buffstreams|framing|tokio|tokio-framing|std-baseline|std-prebuilt[,PEER..]] [--rounds R] [--connections N] \
[--payload B] [--seconds S] [--flush-every N] [--batch N] [--json] [--cpu] | --rtt --peer buffstreams|raw|writer|writer-send \
| --idle-connections N";

/// What a throughput run measured.
struct Outcome {
    /// Messages received during the timed window.
    in_window: u64,
    elapsed: Duration,
    /// Messages written and received in all (after the drain), and size mismatches.
    sent: u64,
    received: u64,
    mismatches: u64,
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    if let Some(n) = args.idle_connections {
        return idle_rss(n);
    }
    if args.rtt {
        return rtt(&args);
    }
    if args.peer.contains(',') {
        return side_by_side(&args);
    }
    let Some((outcome, flush_every)) = run_peer(&args) else {
        eprintln!("unknown peer {}\n{USAGE}", args.peer);
        return ExitCode::from(2);
    };
    let rate = outcome.in_window as f64 / outcome.elapsed.as_secs_f64();
    let mb = rate * args.payload as f64 / 1e6;
    let ok = outcome.ok();
    if args.json {
        println!(
            "{{\"peer\":\"{}\",\"connections\":{},\"payload\":{},\"flush_every\":{},\"batch\":{},\"msgs_per_sec\":{:.0},\"mb_per_sec\":{:.1},\"ok\":{}}}",
            args.peer, args.connections, args.payload, flush_every, args.batch, rate, mb, ok
        );
    } else {
        println!(
            "summary: peer={} connections={} payload={}B flush_every={}: {:.3} M msgs/s, {:.1} MB/s ({} sent, {} received, {} size mismatches)",
            args.peer,
            args.connections,
            args.payload,
            flush_every,
            rate / 1e6,
            mb,
            outcome.sent,
            outcome.received,
            outcome.mismatches
        );
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "FAILED: {} sent, {} received, {} size mismatches",
            outcome.sent, outcome.received, outcome.mismatches
        );
        ExitCode::FAILURE
    }
}

impl Outcome {
    /// Every message written arrived, with the right size.
    fn ok(&self) -> bool {
        self.mismatches == 0 && self.sent == self.received
    }
}

/// Runs `args.peer` once; `None` for an unknown peer. Returns the flush policy in force too.
fn run_peer(args: &Args) -> Option<(Outcome, u64)> {
    let flush_every = args.flush_every.unwrap_or(match args.peer.as_str() {
        "tokio" | "tokio-framing" => 64,
        _ => 0,
    });
    let outcome = match args.peer.as_str() {
        "buffstreams" | "framing" => run_buffstreams(args, flush_every),
        "tokio" | "tokio-framing" => run_tokio(args, flush_every),
        "std-baseline" | "std-prebuilt" => run_std(args, flush_every),
        _ => return None,
    };
    Some((outcome, flush_every))
}

/// `--peer a,b,..`: each peer in turn, `--rounds` times, then one table: the median rate of
/// each and its per-round ratio to the first peer (a round runs every peer back to back, so
/// they share the machine's state).
fn side_by_side(args: &Args) -> ExitCode {
    let peers: Vec<&str> = args.peer.split(',').map(str::trim).collect();
    if !args.json {
        println!(
            "side by side: {} rounds of {} s per peer, {} B messages, {} connection(s), about {} s \
             in all: {}",
            args.rounds,
            args.seconds,
            args.payload,
            args.connections,
            args.rounds * peers.len() * args.seconds as usize,
            peers.join(", ")
        );
    }
    let mut rates = vec![Vec::new(); peers.len()];
    for round in 1..=args.rounds {
        for (i, peer) in peers.iter().enumerate() {
            eprintln!("round {round}/{}: {peer}", args.rounds);
            let one = Args {
                peer: (*peer).to_string(),
                ..args.clone()
            };
            let Some((outcome, _)) = run_peer(&one) else {
                eprintln!("unknown peer {peer}\n{USAGE}");
                return ExitCode::from(2);
            };
            if !outcome.ok() {
                eprintln!(
                    "FAILED: {peer}: {} sent, {} received, {} size mismatches",
                    outcome.sent, outcome.received, outcome.mismatches
                );
                return ExitCode::FAILURE;
            }
            rates[i].push(outcome.in_window as f64 / outcome.elapsed.as_secs_f64());
        }
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(0.0)
    };
    // Ratios to the first peer, and to tokio-util when it ran and is not the first.
    let mut bases = vec![0];
    if let Some(t) = peers.iter().position(|p| *p == "tokio").filter(|&t| t != 0) {
        bases.push(t);
    }
    let ratio = |i: usize, base: usize| {
        median(
            rates[i]
                .iter()
                .zip(&rates[base])
                .map(|(a, b)| a / b.max(1.0))
                .collect(),
        )
    };
    if !args.json {
        let mut head = format!("{:<16} {:>10} {:>10}", "peer", "M msgs/s", "MB/s");
        for &b in &bases {
            head += &format!(" {:>18}", format!("vs {}", peers[b]));
        }
        println!("{head}");
    }
    for (i, peer) in peers.iter().enumerate() {
        let rate = median(rates[i].clone());
        let mb = rate * args.payload as f64 / 1e6;
        if args.json {
            let ratios: Vec<String> = bases
                .iter()
                .map(|&b| format!("\"vs_{}\":{:.3}", peers[b], ratio(i, b)))
                .collect();
            println!(
                "{{\"peer\":\"{peer}\",\"rounds\":{},\"msgs_per_sec\":{rate:.0},\"mb_per_sec\":{mb:.1},{}}}",
                args.rounds,
                ratios.join(",")
            );
        } else {
            let mut line = format!("{:<16} {:>10.2} {:>10.1}", peer, rate / 1e6, mb);
            for &b in &bases {
                line += &format!(" {:>17.2}x", ratio(i, b));
            }
            println!("{line}");
        }
    }
    ExitCode::SUCCESS
}

/// Prints the live rate once a second until `stop`; returns messages counted in the window.
fn meter(args: &Args, received: impl Fn() -> u64, stop: &AtomicBool) -> (u64, Duration) {
    let start = Instant::now();
    let mut last = (0u64, start);
    for _ in 0..args.seconds {
        thread::sleep(Duration::from_secs(1));
        let now = (received(), Instant::now());
        let rate = (now.0 - last.0) as f64 / (now.1 - last.1).as_secs_f64();
        if !args.json {
            eprintln!(
                "  {:>6.3} M msgs/s  {:>8.1} MB/s",
                rate / 1e6,
                rate * args.payload as f64 / 1e6
            );
        }
        last = now;
    }
    let counted = received();
    let elapsed = start.elapsed();
    if args.cpu {
        cpu_report(counted);
    }
    stop.store(true, Relaxed);
    (counted, elapsed)
}

/// Waits (bounded) until `received()` reaches `sent`.
fn drain(received: impl Fn() -> u64, sent: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    while received() < sent && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(5));
    }
    received()
}

fn run_buffstreams(args: &Args, flush_every: u64) -> Outcome {
    let mismatches = Arc::new(AtomicU64::new(0));
    let m2 = mismatches.clone();
    let payload = args.payload;
    let config = ListenerConfig::new()
        .with_max_frame_len(payload.max(1))
        .with_max_connections(args.connections + 8);
    let listener: Listener = Listener::bind("127.0.0.1:0", config).expect("bind");
    let server = listener
        .spawn(move |m: &[u8]| {
            if m.len() != payload {
                m2.fetch_add(1, Relaxed);
            }
            Ok(())
        })
        .expect("spawn the listener");
    let addr = server.local_addr();
    let stop = Arc::new(AtomicBool::new(false));
    let batch = args.batch;
    let cpu = args.cpu;
    let framing_peer = args.peer == "framing";
    let writers: Vec<_> = (0..args.connections)
        .map(|_| {
            let stop = stop.clone();
            let framing = framing_peer;
            thread::spawn(move || {
                if framing {
                    return framing_writer(addr, payload, flush_every, &stop);
                }
                let w: Writer =
                    Writer::dial(addr, WriterConfig::new().with_max_frame_len(payload.max(1)))
                        .expect("dial");
                let msg = vec![0xa5u8; payload];
                let n = if batch == 1 && flush_every == 1 {
                    // `send`: write + flush on this thread, like tokio's `SinkExt::send`.
                    pump(
                        &mut &w,
                        &stop,
                        0,
                        |w| {
                            w.send(&msg).expect("send");
                        },
                        |w| w.flush(),
                    )
                } else if batch == 1 {
                    pump(
                        &mut &w,
                        &stop,
                        flush_every,
                        |w| {
                            w.write(&msg).expect("write");
                        },
                        |w| w.flush(),
                    )
                } else {
                    let batch: Vec<&[u8]> = vec![&msg[..]; batch];
                    let mut n = 0u64;
                    while !stop.load(Relaxed) {
                        for _ in 0..256 / batch.len() {
                            w.write_batch(batch.iter()).expect("write");
                            n += batch.len() as u64;
                            if flush_every > 0 && n % flush_every < batch.len() as u64 {
                                w.flush();
                            }
                        }
                    }
                    n
                };
                let stats = w.close();
                if cpu {
                    eprintln!(
                        "  writer: {} batches of {:.0} bytes on average",
                        stats.batches,
                        stats.bytes_out as f64 / stats.batches.max(1) as f64
                    );
                }
                n
            })
        })
        .collect();
    let (in_window, elapsed) = meter(args, || server.stats().messages_in, &stop);
    let sent: u64 = writers
        .into_iter()
        .map(|t| t.join().expect("writer thread"))
        .sum();
    let received = drain(|| server.stats().messages_in, sent);
    server.shutdown();
    Outcome {
        in_window,
        elapsed,
        sent,
        received,
        mismatches: mismatches.load(Relaxed),
    }
}

/// `--peer framing`: the framing crate's unshared `FrameWriter` over a plain socket, into the
/// same `Listener` (no flusher thread, no reconnects: the single-thread fast path).
fn framing_writer(addr: SocketAddr, payload: usize, flush_every: u64, stop: &AtomicBool) -> u64 {
    use embedded_io_adapters::std::FromStd;
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let enc = Encoder::<BigEndian<4>>::new(Config::new().with_max_frame_len(payload.max(1)));
    let mut w = FrameWriter::new(FromStd::new(stream), enc, vec![0u8; 64 * 1024]);
    let msg = vec![0xa5u8; payload];
    pump(
        &mut w,
        stop,
        flush_every,
        |w| {
            w.write_frame(&msg).expect("write");
        },
        |w| w.flush().expect("flush"),
    )
}

/// `--cpu`: CPU time per message of every busy thread so far, from `/proc` (Linux; clock
/// ticks of 10 ms, so runs of a few seconds give about 1 % precision). The sending thread's
/// figure is what bounds the throughput on two cores.
fn cpu_report(messages: u64) {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return;
    };
    let ticks_ns = 1e9 / 100.0; // USER_HZ
    for task in tasks.flatten() {
        let path = task.path();
        let name = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        let stat = std::fs::read_to_string(path.join("stat")).unwrap_or_default();
        // Fields after the parenthesised name; utime and stime are the 12th and 13th.
        let fields: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        let tick = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        let (user, sys) = (tick(11), tick(12));
        if user + sys > 0.0 && messages > 0 {
            eprintln!(
                "  cpu {:<16} user {:>5.1} ns/msg  sys {:>5.1} ns/msg",
                name.trim(),
                user * ticks_ns / messages as f64,
                sys * ticks_ns / messages as f64
            );
        }
    }
}

/// The write loop every peer shares: `write` one message at a time until `stop`, `flush`
/// every `flush_every` messages (0: only at the end); returns the messages written.
fn pump<W>(
    w: &mut W,
    stop: &AtomicBool,
    flush_every: u64,
    mut write: impl FnMut(&mut W),
    mut flush: impl FnMut(&mut W),
) -> u64 {
    let mut n = 0u64;
    while !stop.load(Relaxed) {
        for _ in 0..256 {
            write(w);
            n += 1;
            if flush_every > 0 && n % flush_every == 0 {
                flush(w);
            }
        }
    }
    flush(w);
    n
}

fn run_std(args: &Args, flush_every: u64) -> Outcome {
    let prebuilt = args.peer == "std-prebuilt";
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let payload = args.payload;
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..args.connections)
        .map(|_| {
            let stop = stop.clone();
            thread::spawn(move || {
                let stream = TcpStream::connect(addr).expect("connect");
                stream.set_nodelay(true).expect("nodelay");
                let mut w = BufWriter::with_capacity(64 * 1024, stream);
                if prebuilt {
                    // One `write_all` of a frame built once: less work than framing each
                    // message, which no peer (and no real application) gets to skip.
                    let mut frame = (payload as u32).to_be_bytes().to_vec();
                    frame.resize(4 + payload, 0xa5);
                    return pump(
                        &mut w,
                        &stop,
                        flush_every,
                        |w| w.write_all(&frame).expect("write"),
                        |w| w.flush().expect("flush"),
                    );
                }
                let msg = vec![0xa5u8; payload];
                pump(
                    &mut w,
                    &stop,
                    flush_every,
                    |w| {
                        let header = u32::try_from(msg.len()).expect("length").to_be_bytes();
                        w.write_all(&header).expect("write");
                        w.write_all(&msg).expect("write");
                    },
                    |w| w.flush().expect("flush"),
                )
            })
        })
        .collect();
    let received = Arc::new(AtomicU64::new(0));
    let mismatches = Arc::new(AtomicU64::new(0));
    let readers: Vec<_> = (0..args.connections)
        .map(|_| {
            let (stream, _) = listener.accept().expect("accept");
            let (received, mismatches) = (received.clone(), mismatches.clone());
            thread::spawn(move || {
                let mut r = BufReader::with_capacity(64 * 1024, stream);
                let mut body = vec![0u8; payload];
                let mut head = [0u8; 4];
                let mut local = 0u64;
                while r.read_exact(&mut head).is_ok() {
                    if u32::from_be_bytes(head) as usize != payload {
                        mismatches.fetch_add(1, Relaxed);
                        break;
                    }
                    if r.read_exact(&mut body).is_err() {
                        break;
                    }
                    local += 1;
                    // Batched like the listener's counters: no shared atomic per message.
                    if local % 1024 == 0 {
                        received.fetch_add(1024, Relaxed);
                    }
                }
                received.fetch_add(local % 1024, Relaxed);
            })
        })
        .collect();
    let (in_window, elapsed) = meter(args, || received.load(Relaxed), &stop);
    let sent: u64 = writers
        .into_iter()
        .map(|t| t.join().expect("writer thread"))
        .sum();
    for r in readers {
        r.join().expect("reader thread");
    }
    Outcome {
        in_window,
        elapsed,
        sent,
        received: received.load(Relaxed),
        mismatches: mismatches.load(Relaxed),
    }
}

/// `tokio`: tokio-util's `Framed` + `LengthDelimitedCodec` on both ends. `tokio-framing`: the
/// framing crate's `AsyncFrameWriter` / `AsyncFrameReader` on the same runtime, over the same
/// sockets through `embedded-io-adapters` (`FromTokio`), with the same flush policy.
fn run_tokio(args: &Args, flush_every: u64) -> Outcome {
    use buffstreams_framing::{AsyncFrameReader, AsyncFrameWriter};
    use bytes::Bytes;
    use embedded_io_adapters::tokio_1::FromTokio;
    use futures_util::{SinkExt, StreamExt};
    use tokio_util::codec::{Framed, FramedRead, LengthDelimitedCodec};

    let ours = args.peer == "tokio-framing";
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let payload = args.payload;
    let received = Arc::new(AtomicU64::new(0));
    let mismatches = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let config = Config::new().with_max_frame_len(payload.max(1));
    let codec = move || {
        LengthDelimitedCodec::builder()
            .max_frame_length(payload.max(1))
            .new_codec()
    };
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let connections = args.connections;
    let server = {
        let (received, mismatches) = (received.clone(), mismatches.clone());
        rt.spawn(async move {
            let mut readers = Vec::new();
            for _ in 0..connections {
                let (stream, _) = listener.accept().await.expect("accept");
                let (received, mismatches) = (received.clone(), mismatches.clone());
                readers.push(tokio::spawn(async move {
                    let mut local = 0u64;
                    let mut count = |len: usize| {
                        if len != payload {
                            mismatches.fetch_add(1, Relaxed);
                        }
                        local += 1;
                        if local % 1024 == 0 {
                            received.fetch_add(1024, Relaxed);
                        }
                    };
                    if ours {
                        let decoder = Decoder::<BigEndian<4>, _>::new(config, Vec::new());
                        let mut frames = AsyncFrameReader::new(
                            FromTokio::new(stream),
                            decoder,
                            vec![0u8; 64 * 1024],
                        );
                        while let Ok(Some(f)) = frames.read_frame().await {
                            count(f.len());
                        }
                    } else {
                        let mut frames = FramedRead::with_capacity(stream, codec(), 64 * 1024);
                        while let Some(Ok(f)) = frames.next().await {
                            count(f.len());
                        }
                    }
                    received.fetch_add(local % 1024, Relaxed);
                }));
            }
            for r in readers {
                r.await.expect("reader task");
            }
        })
    };
    let writers: Vec<_> = (0..connections)
        .map(|_| {
            let stop = stop.clone();
            rt.spawn(async move {
                let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
                stream.set_nodelay(true).expect("nodelay");
                let mut n = 0u64;
                if ours {
                    let encoder = Encoder::<BigEndian<4>>::new(config);
                    let mut sink = AsyncFrameWriter::new(
                        FromTokio::new(stream),
                        encoder,
                        vec![0u8; 64 * 1024],
                    );
                    let msg = vec![0xa5u8; payload];
                    while !stop.load(Relaxed) {
                        for _ in 0..256 {
                            sink.write_frame(&msg).await.expect("write");
                            n += 1;
                            if flush_every > 0 && n % flush_every == 0 {
                                sink.flush().await.expect("flush");
                            }
                        }
                    }
                    sink.flush().await.expect("flush");
                } else {
                    let mut sink = Framed::new(stream, codec());
                    let msg = Bytes::from(vec![0xa5u8; payload]);
                    while !stop.load(Relaxed) {
                        for _ in 0..256 {
                            if flush_every == 1 {
                                sink.send(msg.clone()).await.expect("send");
                            } else {
                                sink.feed(msg.clone()).await.expect("feed");
                                if flush_every > 0 && (n + 1) % flush_every == 0 {
                                    SinkExt::<Bytes>::flush(&mut sink).await.expect("flush");
                                }
                            }
                            n += 1;
                        }
                    }
                    SinkExt::<Bytes>::flush(&mut sink).await.expect("flush");
                }
                n
            })
        })
        .collect();
    let (in_window, elapsed) = meter(args, || received.load(Relaxed), &stop);
    let sent: u64 = writers
        .into_iter()
        .map(|t| rt.block_on(t).expect("writer task"))
        .sum();
    rt.block_on(server).expect("server task");
    Outcome {
        in_window,
        elapsed,
        sent,
        received: received.load(Relaxed),
        mismatches: mismatches.load(Relaxed),
    }
}

/// `--rtt --peer writer|writer-send`: request/response through two `Writer` → `Listener`
/// pairs (BuffStreams' shape: one stream each way). `writer` never flushes: every message is
/// a lone message that the flusher must send at once; `writer-send` uses `Writer::send`.
fn rtt_writers(args: &Args) -> Vec<Duration> {
    let payload = args.payload;
    let send = args.peer == "writer-send";
    let config = || ListenerConfig::new().with_max_frame_len(payload.max(1));
    let (tx, rx) = std::sync::mpsc::sync_channel::<usize>(1);
    let client: Listener = Listener::bind("127.0.0.1:0", config()).expect("bind");
    let client = client
        .spawn(move |m: &[u8]| Ok(tx.send(m.len())?))
        .expect("spawn the listener");
    let writer_config = || WriterConfig::new().with_max_frame_len(payload.max(1));
    let back: Arc<Writer> =
        Arc::new(Writer::dial(client.local_addr(), writer_config()).expect("dial back"));
    let server: Listener = Listener::bind("127.0.0.1:0", config()).expect("bind");
    let server = server
        .spawn(move |m: &[u8]| {
            if send {
                back.send(m)?
            } else {
                back.write(m)?
            };
            Ok(())
        })
        .expect("spawn the listener");
    let w: Writer = Writer::dial(server.local_addr(), writer_config()).expect("dial");
    let msg = vec![0x5au8; payload];
    let mut samples = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    while Instant::now() < deadline {
        let t = Instant::now();
        if send {
            w.send(&msg).expect("send");
        } else {
            w.write(&msg).expect("write");
        }
        let len = rx.recv_timeout(Duration::from_secs(10)).expect("reply");
        assert_eq!(len, payload, "reply size");
        samples.push(t.elapsed());
    }
    drop(w);
    server.shutdown();
    client.shutdown();
    samples
}

/// Request/response round trips, one outstanding at a time, for `seconds`.
fn rtt(args: &Args) -> ExitCode {
    let payload = args.payload;
    let (addr, server): (SocketAddr, Box<dyn FnOnce()>) = match args.peer.as_str() {
        "buffstreams" => {
            let config = ListenerConfig::new().with_max_frame_len(payload.max(1));
            let listener: Listener = Listener::bind("127.0.0.1:0", config).expect("bind");
            let h = listener
                .spawn_with_reply(|m, conn| {
                    conn.reply(m)?;
                    Ok(())
                })
                .expect("spawn the listener");
            (
                h.local_addr(),
                Box::new(move || {
                    h.shutdown();
                }),
            )
        }
        "raw" => {
            let l = TcpListener::bind("127.0.0.1:0").expect("bind");
            let addr = l.local_addr().expect("addr");
            let t = thread::spawn(move || {
                let (mut s, _) = l.accept().expect("accept");
                s.set_nodelay(true).expect("nodelay");
                let mut frame = vec![0u8; 4 + payload];
                while s.read_exact(&mut frame).is_ok() {
                    if s.write_all(&frame).is_err() {
                        break;
                    }
                }
            });
            (addr, Box::new(move || t.join().expect("echo thread")))
        }
        "writer" | "writer-send" => {
            let samples = rtt_writers(args);
            return rtt_report(args, samples, true);
        }
        other => {
            eprintln!("--rtt supports --peer buffstreams, raw, writer or writer-send, not {other}");
            return ExitCode::from(2);
        }
    };
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let mut samples = Vec::new();
    let msg = vec![0x5au8; payload];
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let ok = if args.peer == "raw" {
        let mut s = stream;
        let mut frame = (payload as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(&msg);
        let mut back = vec![0u8; frame.len()];
        while Instant::now() < deadline {
            let t = Instant::now();
            s.write_all(&frame).expect("write");
            s.read_exact(&mut back).expect("read");
            samples.push(t.elapsed());
        }
        back == frame
    } else {
        use embedded_io_adapters::std::FromStd;
        let config = Config::new().with_max_frame_len(payload.max(1));
        let w_stream = stream.try_clone().expect("clone");
        let mut w = FrameWriter::new(
            FromStd::new(w_stream),
            Encoder::<BigEndian<4>>::new(config),
            vec![0u8; 4096],
        );
        let mut r = FrameReader::new(
            FromStd::new(stream),
            Decoder::<BigEndian<4>, _>::new(config, vec![]),
            vec![0u8; 64 * 1024],
        );
        let mut ok = true;
        while Instant::now() < deadline {
            let t = Instant::now();
            w.write_frame(&msg).expect("write");
            w.flush().expect("flush");
            let reply = r.read_frame().expect("read").expect("reply");
            samples.push(t.elapsed());
            ok &= reply == &msg[..];
        }
        drop(w);
        drop(r);
        ok
    };
    server();
    rtt_report(args, samples, ok)
}

fn rtt_report(args: &Args, mut samples: Vec<Duration>, ok: bool) -> ExitCode {
    let payload = args.payload;
    samples.sort_unstable();
    let pct = |p: f64| samples[((samples.len() - 1) as f64 * p) as usize].as_secs_f64() * 1e6;
    println!(
        "rtt: peer={} payload={}B: {} round trips, p50 {:.1} µs, p99 {:.1} µs, {:.0} round trips/s",
        args.peer,
        payload,
        samples.len(),
        pct(0.50),
        pct(0.99),
        samples.len() as f64 / args.seconds as f64
    );
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Resident memory per idle connection: `n` connected peers that send nothing.
fn idle_rss(n: usize) -> ExitCode {
    let config = ListenerConfig::new()
        .with_max_connections(n + 16)
        .with_idle_timeout(None);
    let listener: Listener = Listener::bind("127.0.0.1:0", config).expect("bind");
    let h = listener
        .spawn(|_: &[u8]| Ok(()))
        .expect("spawn the listener");
    let addr = h.local_addr();
    // Warm up the allocator and the thread machinery with one connection first.
    let warm = TcpStream::connect(addr).expect("connect");
    let deadline = Instant::now() + Duration::from_secs(30);
    while h.stats().connections_open < 1 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(1));
    }
    let before = rss_kib();
    let mut clients = Vec::with_capacity(n);
    for _ in 0..n {
        match TcpStream::connect(addr) {
            Ok(s) => clients.push(s),
            Err(e) => {
                eprintln!(
                    "connect failed after {} connections: {e} (raise `ulimit -n`)",
                    clients.len()
                );
                return ExitCode::FAILURE;
            }
        }
    }
    while h.stats().connections_open < n as u64 + 1 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(5));
    }
    let open = h.stats().connections_open;
    let after = rss_kib();
    println!(
        "idle: {} connections open, RSS {} KiB -> {} KiB: {:.1} KiB per idle connection (thread stack + read buffer + decoder)",
        open - 1,
        before,
        after,
        (after.saturating_sub(before)) as f64 / n as f64
    );
    drop(clients);
    drop(warm);
    h.shutdown();
    if open == n as u64 + 1 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

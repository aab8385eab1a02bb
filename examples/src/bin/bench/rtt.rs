//! `--rtt`: request/response round trips, one request outstanding at a time, each peer for
//! `--seconds` after a raw-socket ping-pong run that sets the floor, then one table of
//! percentiles.
//!
//! - `raw`: a 4-byte header and the payload written and read back with `write_all` /
//!   `read_exact` against an echo thread: what the kernel and loopback cost.
//! - `buffstreams`: a framing `FrameWriter` + `FrameReader` client against a `Listener`
//!   replying with `Connection::reply` on the same connection.
//! - `writer`: BuffStreams' shape, one stream each way: the request through a `Writer` into
//!   the server's `Listener`, the reply through a second `Writer` into the client's. Never
//!   flushed: each message is a lone one the flusher must send at once.
//! - `writer-send`: the same with `Writer::send` (write and flush on the caller's thread).
//! - `writer-reply`: the request through a `Writer` (`send`), the reply back on the same
//!   connection (`Connection::reply`, read by `WriterConfig::with_on_reply`).
//! - `buffstreams-acked`: `writer-reply` in the acknowledged mode: the listener's
//!   acknowledgement travels beside the reply.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use buffstreams_framing::{BigEndian, Config, Decoder, Encoder, FrameReader, FrameWriter};
use buffstreams_transport_std::{Listener, ListenerConfig, Writer, WriterConfig};
use embedded_io_adapters::std::FromStd;

use crate::progress::Progress;
use crate::{Args, Peer};

/// Round trips until `seconds` are up: `one` runs one and says whether the reply was right.
fn timed(
    seconds: u64,
    progress: &Progress,
    mut one: impl FnMut() -> bool,
) -> (Vec<Duration>, bool) {
    let start = Instant::now();
    let deadline = start + Duration::from_secs(seconds);
    let mut shown = start;
    let mut samples = Vec::new();
    let mut ok = true;
    loop {
        let t = Instant::now();
        if t >= deadline {
            break;
        }
        if t - shown >= Duration::from_millis(100) {
            progress.advance(t - shown);
            shown = t;
        }
        ok &= one();
        samples.push(t.elapsed());
    }
    progress.advance(Instant::now().saturating_duration_since(shown));
    (samples, ok)
}

fn raw(payload: usize, seconds: u64, progress: &Progress) -> (Vec<Duration>, bool) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    let echo = thread::spawn(move || {
        let (mut s, _) = l.accept().expect("accept");
        s.set_nodelay(true).expect("nodelay");
        let mut frame = vec![0u8; 4 + payload];
        while s.read_exact(&mut frame).is_ok() {
            if s.write_all(&frame).is_err() {
                break;
            }
        }
    });
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_nodelay(true).expect("nodelay");
    let mut frame = (payload as u32).to_be_bytes().to_vec();
    frame.resize(4 + payload, 0x5a);
    let mut back = vec![0u8; frame.len()];
    let result = timed(seconds, progress, || {
        s.write_all(&frame).expect("write");
        s.read_exact(&mut back).expect("read");
        back == frame
    });
    drop(s);
    echo.join().expect("echo thread");
    result
}

fn reply(payload: usize, seconds: u64, progress: &Progress) -> (Vec<Duration>, bool) {
    let config = Config::new().with_max_frame_len(payload.max(1));
    let listener: Listener =
        Listener::bind("127.0.0.1:0", ListenerConfig::new().with_framing(config)).expect("bind");
    let server = listener
        .spawn_with_reply(|m, conn| {
            conn.reply(m)?;
            Ok(())
        })
        .expect("spawn the listener");
    let stream = TcpStream::connect(server.local_addr()).expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let mut w = FrameWriter::new(
        FromStd::new(stream.try_clone().expect("clone")),
        Encoder::<BigEndian<4>>::new(config),
        vec![0u8; 4096],
    );
    let mut r = FrameReader::new(
        FromStd::new(stream),
        Decoder::<BigEndian<4>, _>::new(config, vec![]),
        vec![0u8; 64 * 1024],
    );
    let msg = vec![0x5au8; payload];
    let result = timed(seconds, progress, || {
        w.write_frame(&msg).expect("write");
        w.flush().expect("flush");
        r.read_frame().expect("read").expect("reply") == &msg[..]
    });
    drop((w, r));
    server.shutdown();
    result
}

fn writers(payload: usize, send: bool, seconds: u64, progress: &Progress) -> (Vec<Duration>, bool) {
    let config = || ListenerConfig::new().with_max_frame_len(payload.max(1));
    let writer_config = || WriterConfig::new().with_max_frame_len(payload.max(1));
    let (tx, rx) = std::sync::mpsc::sync_channel::<usize>(1);
    let client: Listener = Listener::bind("127.0.0.1:0", config()).expect("bind");
    let client = client
        .spawn(move |m: &[u8]| Ok(tx.send(m.len())?))
        .expect("spawn the listener");
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
    let result = timed(seconds, progress, || {
        if send {
            w.send(&msg).expect("send");
        } else {
            w.write(&msg).expect("write");
        }
        rx.recv_timeout(Duration::from_secs(10)).expect("reply") == payload
    });
    drop(w);
    server.shutdown();
    client.shutdown();
    result
}

fn on_reply(
    payload: usize,
    acked: bool,
    seconds: u64,
    progress: &Progress,
) -> (Vec<Duration>, bool) {
    let config = ListenerConfig::new()
        .with_max_frame_len(payload.max(1))
        .with_acks(acked);
    let server = Listener::<BigEndian<4>>::bind("127.0.0.1:0", config)
        .expect("bind")
        .spawn_with_reply(|m, conn| {
            conn.reply(m)?;
            Ok(())
        })
        .expect("spawn the listener");
    let (tx, rx) = std::sync::mpsc::sync_channel::<usize>(1);
    let writer_config = WriterConfig::new()
        .with_max_frame_len(payload.max(1))
        .with_acks(acked)
        .with_on_reply(move |m| {
            let _ = tx.send(m.len());
        });
    let w: Writer = Writer::dial(server.local_addr(), writer_config).expect("dial");
    let msg = vec![0x5au8; payload];
    let result = timed(seconds, progress, || {
        w.send(&msg).expect("send");
        rx.recv_timeout(Duration::from_secs(10)).expect("reply") == payload
    });
    drop(w);
    server.shutdown();
    result
}

/// The percentiles of a run, in µs: p50, p90, p99, p99.9.
fn percentiles(samples: &mut [Duration]) -> [f64; 4] {
    samples.sort_unstable();
    let at = |p: f64| {
        samples
            .get(((samples.len().saturating_sub(1)) as f64 * p) as usize)
            .map_or(0.0, |d| d.as_secs_f64() * 1e6)
    };
    [at(0.50), at(0.90), at(0.99), at(0.999)]
}

pub fn run(args: &Args, peers: &[Peer]) -> ExitCode {
    let seconds = args.seconds.unwrap_or(3);
    let payload = args.payload;
    let mut all = vec![Peer::Raw];
    all.extend(peers.iter().copied().filter(|&p| p != Peer::Raw));
    let names: Vec<String> = all.iter().map(|p| p.name()).collect();
    if !args.json {
        println!(
            "round trips: {}; one request outstanding, {payload} B, {seconds} s each",
            names.join(", ")
        );
    }
    let progress = Progress::new(Duration::from_secs(seconds * all.len() as u64), args.json);
    let mut rows = Vec::new();
    for &peer in &all {
        progress.stage(peer.name());
        let (mut samples, ok) = match peer {
            Peer::Raw => raw(payload, seconds, &progress),
            Peer::Buffstreams => reply(payload, seconds, &progress),
            Peer::Writer => writers(payload, false, seconds, &progress),
            Peer::WriterSend => writers(payload, true, seconds, &progress),
            Peer::WriterReply => on_reply(payload, false, seconds, &progress),
            Peer::BuffstreamsAcked => on_reply(payload, true, seconds, &progress),
            _ => unreachable!("checked in main"),
        };
        if !ok || samples.is_empty() {
            progress.finish();
            eprintln!("FAILED: {}: a reply did not match its request", peer.name());
            return ExitCode::FAILURE;
        }
        let count = samples.len();
        rows.push((peer.name(), count, percentiles(&mut samples)));
    }
    progress.finish();
    let raw_p50 = rows[0].2[0];
    if !args.json {
        println!(
            "{:<18} {:>12} {:>9} {:>9} {:>9} {:>9} {:>12}",
            "peer", "round trips/s", "p50 µs", "p90 µs", "p99 µs", "p99.9 µs", "p50 vs raw"
        );
    }
    for (name, count, [p50, p90, p99, p999]) in rows {
        let per_sec = count as f64 / seconds as f64;
        if args.json {
            println!(
                "{{\"peer\":\"{name}\",\"payload\":{payload},\"round_trips_per_sec\":{per_sec:.0},\"p50_us\":{p50:.1},\"p90_us\":{p90:.1},\"p99_us\":{p99:.1},\"p999_us\":{p999:.1}}}"
            );
        } else {
            println!(
                "{name:<18} {per_sec:>12.0} {p50:>9.1} {p90:>9.1} {p99:>9.1} {p999:>9.1} {:>11.2}x",
                p50 / raw_p50.max(f64::MIN_POSITIVE)
            );
        }
    }
    ExitCode::SUCCESS
}

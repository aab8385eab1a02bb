//! buffstreams-transport-smoltcp on smoltcp's `phy::Loopback`, side by side with smoltcp's own
//! `loopback_benchmark` (raw bytes between two sockets of one `Interface`, 64 KiB buffers, one
//! thread, the real clock) in the same process.
//!
//! Each round runs the raw-byte transfer (the ceiling: no byte is written or read), the loop a
//! firmware author writes without this library (`send_slice` of a header and of the payload,
//! a `recv_slice` loop that parses headers by hand and copies each message out: the peer),
//! then 110-byte messages (one `write` each, and 64 per `write_batch`) and 4 KiB messages from
//! a `Writer` into a `Listener` over the same setup, and the 110-byte and 4 KiB `write` runs
//! again in the acknowledged mode (a 256 KiB window; every message numbered, acknowledged once
//! handled). Every message is counted and checked (its length and its sequence number; in the
//! acknowledged mode its number too). Rounds are interleaved so the runs share the machine's
//! state; the table shows medians, each run's ratio to the raw one (in wire bytes: the raw run
//! moves no headers, the framed runs move a 4-byte header per message), to the hand-written
//! loop of its message size, and each acknowledged run's to its plain twin. `--json` prints
//! one object per run instead.

use std::process::ExitCode;
use std::time::Instant as StdInstant;

use buffstreams_framing::acked::{SessionId, SessionSlot, Window};
use buffstreams_framing::{BigEndian, Config};
use buffstreams_transport_smoltcp::{Listener, ListenerConfig, Slot, Writer, WriterConfig};
use clap::Parser;
use smoltcp::iface::{Config as IfaceConfig, Interface, SocketSet};
use smoltcp::phy::{Loopback, Medium};
use smoltcp::socket::tcp;
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, IpAddress, IpCidr, IpEndpoint};

const BUFFER: usize = 64 * 1024;
const PORT: u16 = 1234;

struct Setup {
    device: Loopback,
    iface: Interface,
    sockets: SocketSet<'static>,
    server: smoltcp::iface::SocketHandle,
    client: smoltcp::iface::SocketHandle,
}

fn setup() -> Setup {
    let mut device = Loopback::new(Medium::Ethernet);
    let config = IfaceConfig::new(EthernetAddress([0x02, 0, 0, 0, 0, 1]).into());
    let mut iface = Interface::new(config, &mut device, Instant::now());
    iface.update_ip_addrs(|a| {
        a.push(IpCidr::new(IpAddress::v4(127, 0, 0, 1), 8))
            .expect("one address")
    });
    let mut sockets = SocketSet::new(vec![]);
    let socket = || {
        tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; BUFFER]),
            tcp::SocketBuffer::new(vec![0; BUFFER]),
        )
    };
    let server = sockets.add(socket());
    let client = sockets.add(socket());
    Setup {
        device,
        iface,
        sockets,
        server,
        client,
    }
}

/// Bytes on the wire, messages, seconds.
struct Run {
    wire: u64,
    messages: u64,
    secs: f64,
}

/// The server socket listens, once (`listening` remembers it).
fn listen_once(s: &mut Setup, listening: &mut bool) -> Result<(), String> {
    let socket = s.sockets.get_mut::<tcp::Socket>(s.server);
    if !socket.is_active() && !socket.is_listening() && !*listening {
        socket.listen(PORT).map_err(|e| e.to_string())?;
        *listening = true;
    }
    Ok(())
}

/// The client socket connects to the server, once (`connected` remembers it).
fn connect_once(s: &mut Setup, connected: &mut bool) -> Result<(), String> {
    let socket = s.sockets.get_mut::<tcp::Socket>(s.client);
    if !socket.is_open() && !*connected {
        socket
            .connect(
                s.iface.context(),
                (IpAddress::v4(127, 0, 0, 1), PORT),
                65000,
            )
            .map_err(|e| e.to_string())?;
        *connected = true;
    }
    Ok(())
}

/// smoltcp's `loopback_benchmark` loop: the client fills its send ring, the server empties
/// its receive ring; no byte is written or read.
fn raw(seconds: f64) -> Run {
    let mut s = setup();
    let start = StdInstant::now();
    let mut processed = 0u64;
    let (mut listening, mut connected) = (false, false);
    while start.elapsed().as_secs_f64() < seconds {
        s.iface.poll(Instant::now(), &mut s.device, &mut s.sockets);
        listen_once(&mut s, &mut listening).expect("listen");
        let socket = s.sockets.get_mut::<tcp::Socket>(s.server);
        while socket.can_recv() {
            processed += socket
                .recv(|buffer| (buffer.len(), buffer.len()))
                .expect("recv") as u64;
        }
        connect_once(&mut s, &mut connected).expect("connect");
        let socket = s.sockets.get_mut::<tcp::Socket>(s.client);
        while socket.can_send() {
            socket.send(|buffer| (buffer.len(), ())).expect("send");
        }
    }
    Run {
        wire: processed,
        messages: 0,
        secs: start.elapsed().as_secs_f64(),
    }
}

/// The loop a firmware author writes without this library, on the same setup: `send_slice`
/// of a 4-byte big-endian header and of the payload (once the send ring has room for both),
/// and a `recv_slice` loop into a buffer that parses each header by hand, copies each message
/// out and moves the unfinished rest to the front. Every message is checked as in
/// [`framed`]: its length and its sequence number.
fn hand_written(seconds: f64, size: usize) -> Result<Run, String> {
    let mut s = setup();
    let mut rx = vec![0u8; BUFFER];
    let mut have = 0usize;
    let mut copied = vec![0u8; size];
    let mut out = vec![0xa5u8; size];
    let (mut sent, mut received, mut bad) = (0u64, 0u64, 0u64);
    let (mut listening, mut connected) = (false, false);
    let start = StdInstant::now();
    while start.elapsed().as_secs_f64() < seconds {
        s.iface.poll(Instant::now(), &mut s.device, &mut s.sockets);
        listen_once(&mut s, &mut listening)?;
        let socket = s.sockets.get_mut::<tcp::Socket>(s.server);
        while socket.can_recv() && have < rx.len() {
            have += socket
                .recv_slice(&mut rx[have..])
                .map_err(|e| e.to_string())?;
        }
        let mut at = 0;
        while let Some(header) = rx.get(at..at + 4).filter(|_| have - at >= 4) {
            let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
            if len > size {
                return Err(format!("hand-written: a header declared {len} bytes"));
            }
            if have - at - 4 < len {
                break;
            }
            copied[..len].copy_from_slice(&rx[at + 4..at + 4 + len]);
            let seq = copied
                .get(..8)
                .and_then(|b| b.try_into().ok())
                .map_or(received, u64::from_le_bytes);
            if len != size || (size >= 8 && seq != received) {
                bad += 1;
            }
            received += 1;
            at += 4 + len;
        }
        rx.copy_within(at..have, 0);
        have -= at;
        connect_once(&mut s, &mut connected)?;
        let socket = s.sockets.get_mut::<tcp::Socket>(s.client);
        while socket.can_send() && socket.send_capacity() - socket.send_queue() >= 4 + size {
            if let Some(head) = out.get_mut(..8) {
                head.copy_from_slice(&sent.to_le_bytes());
            }
            let header = (size as u32).to_be_bytes();
            let n = socket.send_slice(&header).map_err(|e| e.to_string())?
                + socket.send_slice(&out).map_err(|e| e.to_string())?;
            if n != 4 + size {
                return Err("hand-written: a message was cut in the send ring".into());
            }
            sent += 1;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    if bad > 0 || received == 0 {
        return Err(format!(
            "hand-written {size}-byte run: {received} received, {bad} wrong"
        ));
    }
    Ok(Run {
        wire: received * (size as u64 + 4),
        messages: received,
        secs,
    })
}

/// One framed run: message size, messages per call, acknowledged mode.
#[derive(Clone, Copy, PartialEq)]
struct Shape {
    size: usize,
    batch: usize,
    acked: bool,
}

/// `size`-byte messages from a `Writer` into a `Listener` on the same setup, `batch` at a time
/// (`write` for 1, `write_batch` above), plain or acknowledged. Each message carries its
/// sequence number in its first 8 bytes; the handler checks it, the length and (acknowledged)
/// the message's number.
fn framed(seconds: f64, shape: Shape) -> Result<Run, String> {
    let Shape { size, acked, .. } = shape;
    let s = setup();
    let framing = Config::new().with_max_frame_len(size);
    let listener: Listener<BigEndian<4>, Vec<u8>, [u8; 64], 1> = Listener::new(
        ListenerConfig::new(PORT).with_framing(framing),
        [Slot::new(s.server, vec![0u8; size], [0u8; 64])],
    );
    let remote = IpEndpoint::new(IpAddress::v4(127, 0, 0, 1), PORT);
    let writer = Writer::<BigEndian<4>, _>::new(
        s.client,
        remote,
        WriterConfig::new().with_framing(framing),
        [0u8; 64],
    );
    if acked {
        let listener = listener.with_acks(vec![SessionSlot::EMPTY; 2]);
        let window = Window::new(Vec::new(), 256 * 1024, 1 << 20);
        let writer = writer.with_acks(window, SessionId([9; 16]));
        drive(seconds, shape, s, listener, writer)
    } else {
        drive(seconds, shape, s, listener, writer)
    }
}

/// Runs `writer` into `listener` for `seconds`, checking every message.
fn drive<T, W>(
    seconds: f64,
    Shape { size, batch, .. }: Shape,
    mut s: Setup,
    mut listener: Listener<BigEndian<4>, Vec<u8>, [u8; 64], 1, T>,
    mut writer: Writer<BigEndian<4>, [u8; 64], W>,
) -> Result<Run, String>
where
    T: AsRef<[SessionSlot]> + AsMut<[SessionSlot]>,
    W: buffstreams_framing::Storage,
{
    let mut messages = vec![vec![0xa5u8; size]; batch];
    let (mut sent, mut received, mut bad) = (0u64, 0u64, 0u64);
    let start = StdInstant::now();
    while start.elapsed().as_secs_f64() < seconds {
        let now = Instant::now();
        s.iface.poll(now, &mut s.device, &mut s.sockets);
        listener.poll(&mut s.sockets, now, |msg, conn| {
            let seq = msg
                .get(..8)
                .and_then(|b| b.try_into().ok())
                .map_or(received, u64::from_le_bytes);
            let numbered = conn.delivery().is_none_or(|d| d.seq == received + 1);
            if msg.len() != size || (size >= 8 && seq != received) || !numbered {
                bad += 1;
            }
            received += 1;
        });
        writer.poll(s.iface.context(), &mut s.sockets, now);
        while writer.is_connected() {
            for (i, m) in messages.iter_mut().enumerate() {
                if let Some(head) = m.get_mut(..8) {
                    head.copy_from_slice(&(sent + i as u64).to_le_bytes());
                }
            }
            let queued = match messages.as_slice() {
                [one] => writer.write(&mut s.sockets, one),
                many => {
                    let refs: Vec<&[u8]> = many.iter().map(Vec::as_slice).collect();
                    writer.write_batch(&mut s.sockets, &refs)
                }
            };
            if queued.is_err() {
                break;
            }
            sent += batch as u64;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    if bad > 0 || received == 0 {
        return Err(format!("{size}-byte run: {received} received, {bad} wrong"));
    }
    Ok(Run {
        wire: received * (size as u64 + 4),
        messages: received,
        secs,
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// transport-smoltcp on smoltcp's loopback device beside smoltcp's raw benchmark.
#[derive(Debug, Parser)]
#[command(
    name = "smoltcp",
    version,
    allow_negative_numbers = true,
    about = "buffstreams-transport-smoltcp on smoltcp's phy::Loopback, side by side with the loop a firmware author writes without it and smoltcp's own loopback benchmark",
    after_help = "Examples:\n  \
                  smoltcp                                  3 rounds of 2 s per run\n  \
                  smoltcp --rounds 5 --seconds 1\n  \
                  smoltcp --json                           one JSON object per run"
)]
struct Args {
    /// Seconds per run (at least 0.1).
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
    /// Rounds (each runs raw bytes, the hand-written loop, then every message size).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=100))]
    rounds: u64,
    /// Machine-readable lines on stdout (one JSON object per run) instead of the table.
    #[arg(long)]
    json: bool,
}

/// What one line of the table measures.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    /// smoltcp's loopback_benchmark: the ceiling.
    Raw,
    /// The loop without this library, `size`-byte messages.
    HandWritten(usize),
    /// A `Writer` into a `Listener`.
    Framed(Shape),
}

impl Kind {
    fn size(self) -> Option<usize> {
        match self {
            Kind::Raw => None,
            Kind::HandWritten(size) => Some(size),
            Kind::Framed(shape) => Some(shape.size),
        }
    }

    fn go(self, seconds: f64) -> Result<Run, String> {
        match self {
            Kind::Raw => Ok(raw(seconds)),
            Kind::HandWritten(size) => hand_written(seconds, size),
            Kind::Framed(shape) => framed(seconds, shape),
        }
    }

    fn label(self) -> String {
        match self {
            Kind::Raw => "raw bytes (smoltcp loopback_benchmark)".into(),
            Kind::HandWritten(size) => {
                format!(
                    "{size} B messages, hand-written send_slice / recv_slice loop, every one checked"
                )
            }
            Kind::Framed(shape) => {
                let how = if shape.batch == 1 {
                    "write".to_string()
                } else {
                    format!("write_batch x{}", shape.batch)
                };
                format!(
                    "{} B messages, Writer::{how} -> Listener{}, every one checked",
                    shape.size,
                    if shape.acked { ", acknowledged" } else { "" }
                )
            }
        }
    }

    fn json_name(self) -> &'static str {
        match self {
            Kind::Raw => "raw",
            Kind::HandWritten(_) => "hand-written",
            Kind::Framed(Shape { acked: true, .. }) => "writer-acked",
            Kind::Framed(Shape { batch: 1, .. }) => "writer",
            Kind::Framed(_) => "writer-batch",
        }
    }
}

/// One run's figures in one round: messages/s, wire bytes/s, ratio to the round's raw run.
#[derive(Clone, Copy)]
struct Rate {
    msgs: f64,
    wire: f64,
    vs_raw: f64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let (seconds, rounds) = (args.seconds.max(0.1), args.rounds);
    let title = format!(
        "smoltcp phy::Loopback, one Interface, 64 KiB socket buffers, one thread: {rounds} rounds of {seconds} s per run"
    );
    if args.json {
        eprintln!("{title}");
    } else {
        println!("{title}");
    }
    let plain = |size, batch| {
        Kind::Framed(Shape {
            size,
            batch,
            acked: false,
        })
    };
    let acked = |size| {
        Kind::Framed(Shape {
            size,
            batch: 1,
            acked: true,
        })
    };
    let kinds = [
        Kind::Raw,
        Kind::HandWritten(110),
        Kind::HandWritten(4096),
        plain(110, 1),
        plain(110, 64),
        plain(4096, 1),
        acked(110),
        acked(4096),
    ];
    let mut rates: Vec<Vec<Rate>> = vec![Vec::new(); kinds.len()];
    for round in 1..=rounds {
        let mut raw_rate = 0.0;
        for (i, &kind) in kinds.iter().enumerate() {
            let run = match kind.go(seconds) {
                Ok(run) => run,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let wire = run.wire as f64 / run.secs;
            if kind == Kind::Raw {
                raw_rate = wire;
            }
            let rate = Rate {
                msgs: run.messages as f64 / run.secs,
                wire,
                vs_raw: wire / raw_rate,
            };
            eprintln!(
                "round {round}: {}: {:.2} M/s, {:.2} Gbit/s on the wire ({:.2}x raw)",
                kind.label(),
                rate.msgs / 1e6,
                wire * 8.0 / 1e9,
                rate.vs_raw
            );
            rates[i].push(rate);
        }
    }
    // Per-round ratio of run `i`'s messages/s to run `j`'s, median over the rounds.
    let versus = |i: usize, j: Option<usize>| {
        j.map(|j| {
            median(
                rates[i]
                    .iter()
                    .zip(&rates[j])
                    .map(|(a, b)| a.msgs / b.msgs)
                    .collect(),
            )
        })
    };
    if !args.json {
        println!(
            "| run | messages/s | wire Gbit/s | payload MB/s | vs raw (per-round median) | vs hand-written (per-round median) | vs plain (per-round median) |"
        );
        println!("|---|---|---|---|---|---|---|");
    }
    for (i, &kind) in kinds.iter().enumerate() {
        let msgs = median(rates[i].iter().map(|r| r.msgs).collect());
        let wire = median(rates[i].iter().map(|r| r.wire).collect());
        let vs_raw = median(rates[i].iter().map(|r| r.vs_raw).collect());
        let hand = match kind {
            Kind::Framed(_) => kinds
                .iter()
                .position(|&k| k == Kind::HandWritten(kind.size().unwrap_or(0))),
            _ => None,
        };
        let twin = match kind {
            Kind::Framed(shape) if shape.acked => kinds.iter().position(|&k| {
                k == Kind::Framed(Shape {
                    acked: false,
                    ..shape
                })
            }),
            _ => None,
        };
        let (vs_hand, vs_plain) = (versus(i, hand), versus(i, twin));
        let payload = kind.size().map(|size| msgs * size as f64 / 1e6);
        if args.json {
            let opt = |v: Option<f64>, digits: usize| {
                v.map_or("null".to_string(), |v| format!("{v:.digits$}"))
            };
            let (size, batch, is_acked) = match kind {
                Kind::Framed(shape) => (Some(shape.size), shape.batch, shape.acked),
                other => (other.size(), 1, false),
            };
            println!(
                "{{\"run\":\"{}\",\"size\":{},\"batch\":{batch},\"acked\":{is_acked},\"rounds\":{rounds},\"msgs_per_sec\":{},\"wire_gbit_per_sec\":{:.3},\"payload_mb_per_sec\":{},\"vs_raw\":{vs_raw:.3},\"vs_hand_written\":{},\"vs_plain\":{},\"ok\":true}}",
                kind.json_name(),
                size.map_or("null".to_string(), |s| s.to_string()),
                opt((kind != Kind::Raw).then_some(msgs), 0),
                wire * 8.0 / 1e9,
                opt(payload, 1),
                opt(vs_hand, 3),
                opt(vs_plain, 3),
            );
        } else {
            let cell = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.2}x"));
            let msgs_cell = if kind == Kind::Raw {
                String::new()
            } else {
                format!("{:.2} M", msgs / 1e6)
            };
            println!(
                "| {} | {msgs_cell} | {:.2} | {} | {vs_raw:.2}x | {} | {} |",
                kind.label(),
                wire * 8.0 / 1e9,
                payload.map_or(String::new(), |p| format!("{p:.0}")),
                cell(vs_hand),
                cell(vs_plain)
            );
        }
    }
    ExitCode::SUCCESS
}

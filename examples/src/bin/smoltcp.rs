//! buffstreams-transport-smoltcp on smoltcp's `phy::Loopback`, side by side with smoltcp's own
//! `loopback_benchmark` (raw bytes between two sockets of one `Interface`, 64 KiB buffers, one
//! thread, the real clock) in the same process.
//!
//! Each round runs the raw-byte transfer, then 110-byte messages (one `write` each, and 64 per
//! `write_batch`) and 4 KiB messages from a `Writer`
//! into a `Listener` over the same setup, and the 110-byte and 4 KiB `write` runs again in the
//! acknowledged mode (a 256 KiB window; every message numbered, acknowledged once handled);
//! every message is counted and checked (its length and its sequence number; in the
//! acknowledged mode its number too). Rounds are interleaved so the runs share the machine's
//! state; the table shows medians, each run's ratio to the raw one (in wire bytes: the raw run
//! moves no headers, the framed runs move a 4-byte header per message), and each
//! acknowledged run's ratio to its plain twin.

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

/// smoltcp's `loopback_benchmark` loop: the client fills its send ring, the server empties
/// its receive ring; no byte is written or read.
fn raw(seconds: f64) -> Run {
    let mut s = setup();
    let start = StdInstant::now();
    let mut processed = 0u64;
    let (mut listening, mut connected) = (false, false);
    while start.elapsed().as_secs_f64() < seconds {
        s.iface.poll(Instant::now(), &mut s.device, &mut s.sockets);
        let socket = s.sockets.get_mut::<tcp::Socket>(s.server);
        if !socket.is_active() && !socket.is_listening() && !listening {
            socket.listen(PORT).expect("listen");
            listening = true;
        }
        while socket.can_recv() {
            processed += socket
                .recv(|buffer| (buffer.len(), buffer.len()))
                .expect("recv") as u64;
        }
        let socket = s.sockets.get_mut::<tcp::Socket>(s.client);
        if !socket.is_open() && !connected {
            socket
                .connect(
                    s.iface.context(),
                    (IpAddress::v4(127, 0, 0, 1), PORT),
                    65000,
                )
                .expect("connect");
            connected = true;
        }
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

/// One framed run: message size, messages per call, acknowledged mode.
#[derive(Clone, Copy)]
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
    about = "buffstreams-transport-smoltcp on smoltcp's phy::Loopback, side by side with smoltcp's own loopback benchmark",
    after_help = "Examples:\n  \
                  smoltcp                                  3 rounds of 2 s per run\n  \
                  smoltcp --rounds 5 --seconds 1"
)]
struct Args {
    /// Seconds per run (at least 0.1).
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
    /// Rounds (each runs raw bytes, then every message size).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=100))]
    rounds: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let (seconds, rounds) = (args.seconds.max(0.1), args.rounds);
    println!(
        "smoltcp phy::Loopback, one Interface, 64 KiB socket buffers, one thread: {rounds} rounds of {seconds} s per run"
    );
    let plain = |size, batch| Shape {
        size,
        batch,
        acked: false,
    };
    let acked = |size| Shape {
        size,
        batch: 1,
        acked: true,
    };
    let sizes = [
        plain(110, 1),
        plain(110, 64),
        plain(4096, 1),
        acked(110),
        acked(4096),
    ];
    let mut raw_rates = Vec::new();
    let mut rates: Vec<Vec<(f64, f64, f64)>> = vec![Vec::new(); sizes.len()];
    for round in 1..=rounds {
        let r = raw(seconds);
        let raw_rate = r.wire as f64 / r.secs;
        raw_rates.push(raw_rate);
        eprintln!("round {round}: raw {:.2} Gbit/s", raw_rate * 8.0 / 1e9);
        for (i, &shape) in sizes.iter().enumerate() {
            match framed(seconds, shape) {
                Ok(f) => {
                    let rate = f.wire as f64 / f.secs;
                    eprintln!(
                        "round {round}: {} B messages x{}{} {:.2} M/s, {:.2} Gbit/s on the wire ({:.2}x raw)",
                        shape.size,
                        shape.batch,
                        if shape.acked { " acknowledged" } else { "" },
                        f.messages as f64 / f.secs / 1e6,
                        rate * 8.0 / 1e9,
                        rate / raw_rate
                    );
                    rates[i].push((f.messages as f64 / f.secs, rate, rate / raw_rate));
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
    }
    println!(
        "| run | messages/s | wire Gbit/s | payload MB/s | vs raw (per-round median) | vs plain (per-round median) |"
    );
    println!("|---|---|---|---|---|---|");
    println!(
        "| raw bytes (smoltcp loopback_benchmark) | | {:.2} | | 1.00x | |",
        median(raw_rates) * 8.0 / 1e9
    );
    for (i, shape) in sizes.iter().enumerate() {
        let how = if shape.batch == 1 {
            "write".to_string()
        } else {
            format!("write_batch x{}", shape.batch)
        };
        let msgs = median(rates[i].iter().map(|r| r.0).collect());
        let wire = median(rates[i].iter().map(|r| r.1).collect());
        let ratio = median(rates[i].iter().map(|r| r.2).collect());
        // The acknowledged run beside its plain twin of the same round.
        let twin = sizes
            .iter()
            .position(|p| !p.acked && p.size == shape.size && p.batch == shape.batch);
        let vs_plain = match (shape.acked, twin) {
            (true, Some(j)) => format!(
                "{:.2}x",
                median(
                    rates[i]
                        .iter()
                        .zip(&rates[j])
                        .map(|(a, p)| a.0 / p.0)
                        .collect()
                )
            ),
            _ => String::new(),
        };
        println!(
            "| {} B messages, Writer::{how} -> Listener{}, every one checked | {:.2} M | {:.2} | {:.0} | {:.2}x | {vs_plain} |",
            shape.size,
            if shape.acked { ", acknowledged" } else { "" },
            msgs / 1e6,
            wire * 8.0 / 1e9,
            msgs * shape.size as f64 / 1e6,
            ratio
        );
    }
    ExitCode::SUCCESS
}

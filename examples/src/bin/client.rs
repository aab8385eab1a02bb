//! A BuffStreams client: sends each line of standard input as one message, or `--count`
//! generated messages, through a [`Writer`]; with `--request` it waits for every reply
//! (against `server --echo`). `client --help` lists the flags.
//!
//! Without `--request` the `Writer` queues, coalesces and sends on its own (no flush in the
//! loop); closing it at the end sends the rest. It also reads whatever the server sends back
//! (`WriterConfig::with_on_reply`) and counts it, so an echoing server never blocks it.
//! `--request` uses the framing crate's `FrameWriter` / `FrameReader` on one socket: one
//! request, one reply, with round-trip percentiles at the end.

use std::io::BufRead;
use std::net::TcpStream;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use buffstreams_examples::cli::{self, DEFAULT_ADDR, Format};
use buffstreams_framing::{Decoder, Encoder, FrameReader, FrameWriter, ReadError};
use buffstreams_transport_std::rustls::pki_types::ServerName;
use buffstreams_transport_std::{
    BigEndian, BuffStreams, Config, LengthPrefix, Writer, WriterConfig,
};
use clap::Parser;
use embedded_io_adapters::std::FromStd;

/// A BuffStreams client.
#[derive(Debug, Parser)]
#[command(
    name = "client",
    version,
    allow_negative_numbers = true,
    about = "A BuffStreams client: every line of stdin is one message, or --count generated ones",
    after_help = "Exit status: 0 when every message was delivered (and, with --request, every \
                  reply matched), 1 otherwise.\n\n\
                  Examples:\n  \
                  printf 'hello\\nworld\\n' | client              two messages to 127.0.0.1:5031\n  \
                  client --count 1000000 --payload 110      a million generated ones\n  \
                  client --request --count 10000            round trips against `server --echo`\n  \
                  client --acks --count 100000 --addr host:5031   acknowledged, against `server --acks`"
)]
struct Args {
    /// Address of the server.
    #[arg(long, default_value = DEFAULT_ADDR, value_name = "HOST:PORT", value_parser = cli::host_port)]
    addr: String,
    /// Header format (the server's).
    #[arg(long, value_enum, default_value_t = Format::Bigendian)]
    format: Format,
    /// Send N generated messages instead of reading stdin.
    #[arg(long, value_name = "N")]
    count: Option<u64>,
    /// Bytes per generated message (over 4096 needs `server --max`).
    #[arg(long, default_value_t = 110)]
    payload: usize,
    /// Request/response: wait for each reply (against `server --echo`) and time it.
    #[arg(long, conflicts_with_all = ["acks", "ca"])]
    request: bool,
    /// The acknowledged mode (against `server --acks`): every message kept until the server
    /// acknowledges it, re-sent after a reconnect.
    #[arg(long, alias = "acked")]
    acks: bool,
    #[command(flatten)]
    tls: cli::TlsArgs,
    /// With --ca: the name the server's certificate must carry.
    #[arg(long, default_value = "localhost", value_name = "NAME")]
    server_name: String,
}

/// Where the messages come from: generated, or one per line of standard input.
fn messages(args: &Args) -> Box<dyn Iterator<Item = Vec<u8>>> {
    match args.count {
        Some(n) => {
            let payload = args.payload;
            Box::new((0..n).map(move |i| {
                let mut m = vec![0xa5; payload];
                let tag = i.to_be_bytes();
                let k = payload.min(tag.len());
                m[..k].copy_from_slice(&tag[tag.len() - k..]);
                m
            }))
        }
        // Any bytes, not only UTF-8: a message is whatever lies between two newlines.
        None => Box::new(std::io::stdin().lock().split(b'\n').map_while(Result::ok)),
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.payload > 4096 && args.count.is_some() {
        eprintln!(
            "client: note: payloads over 4096 bytes need `server --max {}`",
            args.payload
        );
    }
    match (args.format, args.request) {
        (Format::Bigendian, false) => stream::<BigEndian<4>>(&args),
        (Format::Buffstreams, false) => stream::<BuffStreams<3>>(&args),
        (Format::Bigendian, true) => request::<BigEndian<4>>(&args),
        (Format::Buffstreams, true) => request::<BuffStreams<3>>(&args),
    }
}

/// Fire and forget through the `Writer`, counting what comes back.
fn stream<H: LengthPrefix + Send + 'static>(args: &Args) -> ExitCode {
    let max = args.payload.max(4096);
    let replies = Arc::new(AtomicU64::new(0));
    let counted = replies.clone();
    let mut config = WriterConfig::new()
        .with_max_frame_len(max)
        .with_acks(args.acks)
        .with_on_reply(move |_| {
            counted.fetch_add(1, Relaxed);
        });
    match (
        args.tls.client(),
        ServerName::try_from(args.server_name.clone()),
    ) {
        (Ok(Some(tls)), Ok(name)) => config = config.with_tls(tls, name),
        (Ok(None), _) => {}
        (Err(e), _) => return cli::fail("client", "TLS", e),
        (_, Err(e)) => return cli::fail("client", "--server-name", e),
    }
    let dialled = Instant::now();
    let writer = match Writer::<H>::dial(args.addr.as_str(), config) {
        Ok(w) => w,
        Err(e) => {
            return cli::fail(
                "client",
                format!("cannot connect to {}", args.addr),
                format!(
                    "{} (retried for {:.1} s)",
                    cli::reason(&e),
                    dialled.elapsed().as_secs_f64()
                ),
            );
        }
    };
    let started = Instant::now();
    for m in messages(args) {
        if let Err(e) = writer.write(&m) {
            return cli::fail("client", "cannot send a message", cli::reason(&e));
        }
    }
    // Flushes, joins the flusher, waits for the server's last replies (if it sends any).
    let stats = writer.close();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "sent {} messages ({} bytes on the wire) in {:.3} s: {:.0} msgs/s",
        stats.messages_out,
        stats.bytes_out,
        secs,
        stats.messages_out as f64 / secs,
    );
    println!(
        "writer: {} batches, {} reconnects, {} failed connects, {} socket errors, \
         {} dead-lettered, {} in doubt, {} replies read, {} bad reply streams, {} acknowledged, \
         {} re-sent",
        stats.batches,
        stats.reconnects,
        stats.connect_failures,
        stats.io_errors,
        stats.dead_lettered,
        stats.in_doubt,
        stats.replies,
        stats.protocol_errors,
        stats.acked,
        stats.resent,
    );
    println!(
        "(in doubt: messages the kernel had taken when a connection broke; they may or may not \
         have reached the server, whose counters can tell)"
    );
    if stats.replies > 0 && stats.replies != stats.messages_out {
        println!(
            "the server sent {} replies for {} messages",
            stats.replies, stats.messages_out
        );
    }
    if stats.dead_lettered > 0 {
        return cli::fail(
            "client",
            "not delivered",
            format!(
                "{} messages could not be sent to {}",
                stats.dead_lettered, args.addr
            ),
        );
    }
    ExitCode::SUCCESS
}

/// One request, one reply, on a socket of our own.
fn request<H: LengthPrefix>(args: &Args) -> ExitCode {
    let connect = || -> std::io::Result<(TcpStream, TcpStream)> {
        let stream = TcpStream::connect(args.addr.as_str())?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        Ok((stream.try_clone()?, stream))
    };
    let (sending, receiving) = match connect() {
        Ok(s) => s,
        Err(e) => {
            return cli::fail(
                "client",
                format!("cannot connect to {}", args.addr),
                cli::io_reason(&e),
            );
        }
    };
    let max = args.payload.max(4096);
    let config = Config::new().with_max_frame_len(max);
    let mut tx = FrameWriter::new(
        FromStd::new(sending),
        Encoder::<H>::new(config),
        vec![0u8; max + 16],
    );
    let decoder = Decoder::<H, _>::new(config, vec![0u8; max]);
    let mut rx = FrameReader::new(FromStd::new(receiving), decoder, vec![0u8; 64 * 1024]);
    let interactive = args.count.is_none();
    let mut rtts = Vec::new();
    for (i, m) in messages(args).enumerate() {
        let t = Instant::now();
        if let Err(e) = tx.write_frame(&m).and_then(|_| tx.flush()) {
            return cli::fail("client", format!("request {i}"), e);
        }
        let reply = match rx.read_frame() {
            Ok(Some(reply)) => reply,
            Ok(None) => {
                return cli::fail(
                    "client",
                    format!("request {i}"),
                    "the server closed the connection",
                );
            }
            Err(ReadError::Decode(e)) => {
                return cli::fail(
                    "client",
                    format!("the reply to request {i} does not parse"),
                    format!("the server sent {}", cli::format_hint(&e, args.format)),
                );
            }
            Err(ReadError::UnexpectedEof) => {
                return cli::fail(
                    "client",
                    format!("request {i}"),
                    "the server closed the connection inside a reply",
                );
            }
            Err(ReadError::Io(e)) => {
                return cli::fail(
                    "client",
                    format!("request {i}"),
                    format!("no reply: {}", cli::io_reason(&e)),
                );
            }
            Err(e) => return cli::fail("client", format!("request {i}"), e),
        };
        rtts.push(t.elapsed());
        if reply != m.as_slice() {
            return cli::fail(
                "client",
                format!("request {i}"),
                "the reply differs from the request",
            );
        }
        if interactive {
            println!("{}", String::from_utf8_lossy(reply));
        }
    }
    rtts.sort();
    let pct = |p: usize| rtts.get(rtts.len().saturating_sub(1) * p / 100).copied();
    println!(
        "{} round trips, p50 {:?}, p99 {:?}",
        rtts.len(),
        pct(50).unwrap_or_default(),
        pct(99).unwrap_or_default()
    );
    ExitCode::SUCCESS
}

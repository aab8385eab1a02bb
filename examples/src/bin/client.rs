//! A BuffStreams client: sends each line of standard input as one message, or `--count`
//! generated messages, through a [`Writer`]; with `--request` it waits for every reply
//! (against `server --echo`).
//!
//! ```text
//! client [--addr 127.0.0.1:5031] [--format bigendian|buffstreams] [--count N]
//!        [--payload BYTES] [--request]
//! ```
//!
//! Without `--request` the `Writer` queues, coalesces and sends on its own (no flush in the
//! loop); closing it at the end sends the rest. `--request` uses the framing crate's
//! `FrameWriter` / `FrameReader` on one socket: one request, one reply, with round-trip
//! percentiles at the end.

use std::io::BufRead;
use std::net::TcpStream;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use buffstreams_examples::cli;
use buffstreams_framing::{Decoder, Encoder, FrameReader, FrameWriter};
use buffstreams_transport_std::{
    BigEndian, BuffStreams, Config, LengthPrefix, Writer, WriterConfig,
};
use embedded_io_adapters::std::FromStd;

const USAGE: &str = "client [--addr 127.0.0.1:5031] [--format bigendian|buffstreams] \
[--count N] [--payload BYTES] [--request]";

struct Args {
    addr: String,
    buffstreams: bool,
    count: Option<u64>,
    payload: usize,
    request: bool,
}

fn parse() -> Result<Args, String> {
    let mut p = cli::args(USAGE)?;
    let bad = cli::bad(USAGE);
    let a = Args {
        addr: cli::addr(&mut p, USAGE)?,
        buffstreams: cli::buffstreams_format(&mut p, USAGE)?,
        count: p.opt_value_from_str("--count").map_err(&bad)?,
        payload: p
            .opt_value_from_str("--payload")
            .map_err(&bad)?
            .unwrap_or(110),
        request: p.contains("--request"),
    };
    cli::finish(p, USAGE)?;
    // The server's default maximum; larger messages need `server --max`.
    if a.payload > 4096 {
        eprintln!(
            "note: payloads over 4096 bytes need `server --max {}`",
            a.payload
        );
    }
    Ok(a)
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
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let done = match (args.buffstreams, args.request) {
        (false, false) => stream::<BigEndian<4>>(&args),
        (true, false) => stream::<BuffStreams<3>>(&args),
        (false, true) => request::<BigEndian<4>>(&args),
        (true, true) => request::<BuffStreams<3>>(&args),
    };
    match done {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("client: {e}");
            ExitCode::FAILURE
        }
    }
}

/// What the two modes return.
type Outcome = Result<(), Box<dyn std::error::Error>>;

/// Fire and forget through the `Writer`.
fn stream<H: LengthPrefix + Send + 'static>(args: &Args) -> Outcome {
    let max = args.payload.max(4096);
    let writer = Writer::<H>::dial(
        args.addr.as_str(),
        WriterConfig::new().with_max_frame_len(max),
    )?;
    let started = Instant::now();
    for m in messages(args) {
        writer.write(&m)?;
    }
    // Flushes, joins the flusher; anything undeliverable would show as dead-lettered.
    let stats = writer.close();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "sent {} messages ({} bytes on the wire) in {:.3} s: {:.0} msgs/s, {} batches, \
         {} reconnects, {} failed connects, {} socket errors, {} dead-lettered, {} in doubt",
        stats.messages_out,
        stats.bytes_out,
        secs,
        stats.messages_out as f64 / secs,
        stats.batches,
        stats.reconnects,
        stats.connect_failures,
        stats.io_errors,
        stats.dead_lettered,
        stats.in_doubt,
    );
    if stats.in_doubt > 0 {
        println!(
            "in doubt: the kernel had taken these messages when the connection broke; they may \
             or may not have reached the server (only the server's counters can tell)"
        );
    }
    if stats.dead_lettered > 0 {
        return Err("some messages were not delivered".into());
    }
    Ok(())
}

/// One request, one reply, on a socket of our own.
fn request<H: LengthPrefix>(args: &Args) -> Outcome {
    let stream = TcpStream::connect(args.addr.as_str())?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let max = args.payload.max(4096);
    let config = Config::new().with_max_frame_len(max);
    let mut tx = FrameWriter::new(
        FromStd::new(stream.try_clone()?),
        Encoder::<H>::new(config),
        vec![0u8; max + 16],
    );
    let decoder = Decoder::<H, _>::new(config, vec![0u8; max]);
    let mut rx = FrameReader::new(FromStd::new(stream), decoder, vec![0u8; 64 * 1024]);
    let interactive = args.count.is_none();
    let mut rtts = Vec::new();
    for m in messages(args) {
        let t = Instant::now();
        tx.write_frame(&m)?;
        tx.flush()?;
        let reply = rx.read_frame()?.ok_or("the server closed the connection")?;
        rtts.push(t.elapsed());
        if reply != m.as_slice() {
            return Err("the reply differs from the request".into());
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
    Ok(())
}

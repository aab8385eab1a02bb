//! Protocol Buffers over a BuffStreams connection, with `prost`.
//!
//! The stream is protobuf's own delimited format (`Varint32` headers): what Java's
//! `writeDelimitedTo` / `parseDelimitedFrom`, C++'s `SerializeDelimitedToOstream` and prost's
//! `encode_length_delimited` write and read. A [`Listener`] decodes every message with
//! `prost::Message::decode`; a [`Writer`] sends `N` readings encoded with `encode_to_vec`,
//! and a plain socket sends one more written by prost itself (`encode_length_delimited`), as
//! a client in another language would. Exits non-zero unless all arrive intact and in order.

use std::io::Write;
use std::net::TcpStream;
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use buffstreams_transport_std::{Listener, ListenerConfig, Varint32, Writer, WriterConfig};
use clap::Parser;
use prost::Message;

/// A sensor reading, as `message Reading { string sensor = 1; double celsius = 2;
/// uint64 seq = 3; }` in a `.proto` file.
#[derive(Clone, PartialEq, Message)]
struct Reading {
    #[prost(string, tag = "1")]
    sensor: String,
    #[prost(double, tag = "2")]
    celsius: f64,
    #[prost(uint64, tag = "3")]
    seq: u64,
}

fn reading(seq: u64) -> Reading {
    Reading {
        sensor: format!("probe-{}", seq % 4),
        celsius: 20.0 + (seq % 100) as f64 / 10.0,
        seq,
    }
}

/// Protocol Buffers messages through a Listener and a Writer.
#[derive(Debug, Parser)]
#[command(
    name = "protobuf",
    version,
    allow_negative_numbers = true,
    about = "Protocol Buffers over BuffStreams with prost: a Writer sends readings, a Listener decodes and checks them",
    after_help = "Examples:\n  \
                  protobuf                                 100,000 readings\n  \
                  protobuf --count 10"
)]
struct Args {
    /// Readings to send.
    #[arg(long, default_value_t = 100_000)]
    count: u64,
}

fn main() -> ExitCode {
    let count = Args::parse().count;
    match run(count) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("protobuf: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(count: u64) -> Result<(), Box<dyn std::error::Error>> {
    let (tx, rx) = mpsc::channel();
    let listener = Listener::<Varint32>::bind("127.0.0.1:0", ListenerConfig::new())?;
    let server = listener.spawn(move |bytes: &[u8]| {
        // A message that does not decode is the callback's error: logged and counted, and
        // the connection goes on.
        tx.send(Reading::decode(bytes)?)?;
        Ok(())
    })?;
    let addr = server.local_addr();
    println!("listening on {addr} (protobuf delimited stream)");

    let started = Instant::now();
    let writer = Writer::<Varint32>::dial(addr, WriterConfig::new())?;
    for seq in 0..count {
        writer.write(&reading(seq).encode_to_vec())?;
    }
    writer.flush();
    for seq in 0..count {
        let got = rx.recv_timeout(Duration::from_secs(10))?;
        if got != reading(seq) {
            return Err(format!("reading {seq}: got {got:?}").into());
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{count} readings encoded, sent, decoded and checked in {secs:.3} s ({:.0}/s)",
        count as f64 / secs
    );

    // Another language's client: prost writes the length prefix itself.
    let last = reading(count);
    TcpStream::connect(addr)?.write_all(&last.encode_length_delimited_to_vec())?;
    let got = rx.recv_timeout(Duration::from_secs(10))?;
    if got != last {
        return Err(format!("prost's own delimited message: got {got:?}").into());
    }
    println!("prost encode_length_delimited -> Listener<Varint32>: {got:?}");

    writer.close();
    let stats = server.shutdown();
    println!(
        "listener: {} messages, {} callback errors",
        stats.messages_in, stats.callback_errors
    );
    Ok(())
}

//! A BuffStreams server: every complete message goes to a callback; prints messages/s once a
//! second while traffic flows, and the listener's counters when it stops. `server --help`
//! lists the flags.
//!
//! `--format buffstreams` talks to Go BuffStreams (its 3-byte header, so `--max` up to
//! 65535); the default is the 4-byte big-endian header of tokio-util's
//! `LengthDelimitedCodec`. `--echo` sends every message back on its connection
//! (request/response), `--print` prints each one: as text when it is UTF-8 (control characters
//! escaped), else as an escaped preview of its first 64 bytes. The first protocol error of
//! each peer is reported at once, with a guess at the format it speaks.
//!
//! The server stops after `--exit-after` messages, after `--seconds`, on Ctrl-C or SIGTERM,
//! or when Enter is pressed on a terminal, and shuts down gracefully: every message received
//! in full is handled first.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use buffstreams_examples::cli::{self, DEFAULT_ADDR, Format};
use buffstreams_transport_std::{
    BigEndian, BuffStreams, LengthPrefix, Listener, ListenerConfig, ListenerStats,
};
use clap::{CommandFactory, Parser};

/// A BuffStreams server on one address.
#[derive(Debug, Parser)]
#[command(
    name = "server",
    version,
    allow_negative_numbers = true,
    about = "A BuffStreams server: hands every message to a callback, shows messages/s, prints its counters when it stops",
    after_help = "Stops gracefully (every message received in full is handled first) on Enter at a \
                  terminal, Ctrl-C, SIGTERM, --exit-after or --seconds.\n\n\
                  Examples:\n  \
                  server                                   listen on 127.0.0.1:5031, count messages\n  \
                  server --echo --print                    reply with every message, and show it\n  \
                  server --format buffstreams --addr 0.0.0.0:5031   talk to Go BuffStreams\n  \
                  server --acks --exit-after 1000000       acknowledged mode, stop after a million"
)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = DEFAULT_ADDR, value_name = "HOST:PORT", value_parser = cli::host_port)]
    addr: String,
    /// Header format.
    #[arg(long, value_enum, default_value_t = Format::Bigendian)]
    format: Format,
    /// Longest message accepted, in bytes (at most 65535 with --format buffstreams).
    #[arg(long, default_value_t = 4096)]
    max: usize,
    /// Send every message back on its connection.
    #[arg(long)]
    echo: bool,
    /// Print every message: text when it is UTF-8, an escaped preview otherwise.
    #[arg(long)]
    print: bool,
    /// The acknowledged mode: acknowledge every message once handled (clients need --acks).
    #[arg(long, alias = "acked")]
    acks: bool,
    #[command(flatten)]
    tls: cli::TlsArgs,
    /// Stop after this many messages.
    #[arg(long, value_name = "MESSAGES")]
    exit_after: Option<u64>,
    /// Stop after this many seconds.
    #[arg(long)]
    seconds: Option<u64>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.format == Format::Buffstreams && args.max > 65535 {
        Args::command()
            .error(
                clap::error::ErrorKind::ValueValidation,
                "--max is at most 65535 with --format buffstreams (its 3-byte header)",
            )
            .exit();
    }
    match args.format {
        Format::Bigendian => serve::<BigEndian<4>>(&args),
        Format::Buffstreams => serve::<BuffStreams<3>>(&args),
    }
}

fn serve<H: LengthPrefix + Send + Sync + 'static>(args: &Args) -> ExitCode {
    let mut config = ListenerConfig::new()
        .with_max_frame_len(args.max)
        .with_acks(args.acks);
    match args.tls.server() {
        Ok(Some(tls)) => config = config.with_tls(tls),
        Ok(None) => {}
        Err(e) => return cli::fail("server", "TLS", e),
    }
    let listener = match Listener::<H>::bind(args.addr.as_str(), config) {
        Ok(l) => l,
        Err(e) => {
            return cli::fail(
                "server",
                format!("cannot listen on {}", args.addr),
                cli::reason(&e),
            );
        }
    };
    // The first protocol error of a connection closes it: say so at once, with a guess.
    let format = args.format;
    let listener = listener.on_protocol_error(move |peer, e| {
        eprintln!("server: peer {peer} sent {}", cli::format_hint(e, format));
    });
    println!(
        "listening on {} ({} headers, messages up to {} bytes{})",
        listener.local_addr(),
        format.name(),
        args.max,
        if args.tls.ca.is_some() {
            ", mutual TLS"
        } else {
            ""
        }
    );
    let print = args.print;
    let spawned = if args.echo {
        listener.spawn_with_reply(move |m, conn| {
            if print {
                println!("{}: {}", conn.peer_addr(), preview(m));
            }
            conn.reply(m)?;
            Ok(())
        })
    } else {
        listener.spawn(move |m: &[u8]| {
            if print {
                println!("{}", preview(m));
            }
            Ok(())
        })
    };
    let server = match spawned {
        Ok(s) => s,
        Err(e) => return cli::fail("server", "cannot start the listener", cli::reason(&e)),
    };

    let (stop, stopped) = mpsc::channel::<&str>();
    let signal = stop.clone();
    if let Err(e) = ctrlc::set_handler(move || {
        let _ = signal.send("signal");
    }) {
        eprintln!("server: Ctrl-C will not stop gracefully: {e}");
    }
    if std::io::stdin().is_terminal() {
        println!("press Enter or Ctrl-C to stop");
        thread::spawn(move || {
            let _ = std::io::stdin().read_line(&mut String::new());
            let _ = stop.send("Enter");
        });
    }
    let started = Instant::now();
    let deadline = args.seconds.map(|s| started + Duration::from_secs(s));
    let mut last = (Instant::now(), server.stats());
    let why = loop {
        if let Ok(why) = stopped.recv_timeout(Duration::from_millis(20)) {
            break why;
        }
        let now = server.stats();
        if args.exit_after.is_some_and(|n| now.messages_in >= n) {
            break "--exit-after";
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break "--seconds";
        }
        let dt = last.0.elapsed();
        if dt >= Duration::from_secs(1) {
            if now.messages_in != last.1.messages_in || now.connections_open != 0 {
                let secs = dt.as_secs_f64();
                println!(
                    "{:>10.0} msgs/s {:>9.1} MB/s   {} messages, {} connections open",
                    (now.messages_in - last.1.messages_in) as f64 / secs,
                    (now.bytes_in - last.1.bytes_in) as f64 / secs / 1e6,
                    now.messages_in,
                    now.connections_open,
                );
            }
            last = (Instant::now(), now);
        }
    };
    println!("stopping ({why}): finishing the messages received in full");
    summary(&server.shutdown());
    ExitCode::SUCCESS
}

fn summary(s: &ListenerStats) {
    println!(
        "stopped: {} messages ({} bytes) in, {} replies out, {} connections, \
         {} protocol errors, {} idle timeouts, {} truncated, {} skipped, \
         {} acknowledgements, {} connections superseded, {} refused handshakes, \
         {} TLS failures",
        s.messages_in,
        s.bytes_in,
        s.messages_out,
        s.connections_total,
        s.protocol_errors,
        s.idle_timeouts,
        s.truncated,
        s.skipped,
        s.acks_out,
        s.superseded,
        s.handshake_errors,
        s.tls_errors,
    );
}

/// A message for the terminal: its text when it is UTF-8 (control characters escaped, so
/// binary never reaches the terminal raw), else the first 64 bytes escaped and its length.
fn preview(m: &[u8]) -> String {
    match std::str::from_utf8(m) {
        Ok(text) => text.escape_debug().to_string(),
        Err(_) => {
            let head: String = m
                .iter()
                .take(64)
                .flat_map(|b| b.escape_ascii())
                .map(char::from)
                .collect();
            let more = if m.len() > 64 { "…" } else { "" };
            format!("[{} bytes, not UTF-8] {head}{more}", m.len())
        }
    }
}

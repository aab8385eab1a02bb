//! A BuffStreams server: every complete message goes to a callback; prints messages/s once a
//! second while traffic flows, and the listener's counters when it stops.
//!
//! ```text
//! server [--addr 127.0.0.1:5031] [--format bigendian|buffstreams] [--max BYTES] [--echo]
//!        [--print] [--exit-after MESSAGES] [--seconds S]
//! ```
//!
//! `--format buffstreams` talks to Go BuffStreams (its 3-byte header, so `--max` up to
//! 65535); the default is the 4-byte big-endian header of tokio-util's
//! `LengthDelimitedCodec`. `--echo` sends every message back on its connection
//! (request/response), `--print` prints each one: as text when it is UTF-8 (control characters
//! escaped), else as an escaped preview of its first 64 bytes. The server stops after
//! `--exit-after` messages, after `--seconds`, or when Enter is pressed on a terminal, and
//! shuts down gracefully: every message received in full is handled first.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use buffstreams_examples::cli;
use buffstreams_transport_std::{
    BigEndian, BuffStreams, Error, LengthPrefix, Listener, ListenerConfig, ListenerStats,
};

const USAGE: &str = "server [--addr 127.0.0.1:5031] [--format bigendian|buffstreams] \
[--max BYTES] [--echo] [--print] [--exit-after MESSAGES] [--seconds S]";

struct Args {
    addr: String,
    buffstreams: bool,
    max: usize,
    echo: bool,
    print: bool,
    exit_after: Option<u64>,
    seconds: Option<u64>,
}

fn parse() -> Result<Args, String> {
    let mut p = cli::args(USAGE)?;
    let bad = cli::bad(USAGE);
    let a = Args {
        addr: cli::addr(&mut p, USAGE)?,
        buffstreams: cli::buffstreams_format(&mut p, USAGE)?,
        max: p.opt_value_from_str("--max").map_err(&bad)?.unwrap_or(4096),
        echo: p.contains("--echo"),
        print: p.contains("--print"),
        exit_after: p.opt_value_from_str("--exit-after").map_err(&bad)?,
        seconds: p.opt_value_from_str("--seconds").map_err(&bad)?,
    };
    cli::finish(p, USAGE)?;
    if a.buffstreams && a.max > 65535 {
        return Err("--format buffstreams: --max is at most 65535 (3-byte header)".into());
    }
    Ok(a)
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let served = if args.buffstreams {
        serve::<BuffStreams<3>>(&args)
    } else {
        serve::<BigEndian<4>>(&args)
    };
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("server: {e}");
            ExitCode::FAILURE
        }
    }
}

fn serve<H: LengthPrefix + Send + Sync + 'static>(args: &Args) -> Result<(), Error> {
    let listener = Listener::<H>::bind(
        args.addr.as_str(),
        ListenerConfig::new().with_max_frame_len(args.max),
    )?;
    println!("listening on {}", listener.local_addr());
    let print = args.print;
    let server = if args.echo {
        listener.spawn_with_reply(move |m, conn| {
            if print {
                println!("{}: {}", conn.peer_addr(), preview(m));
            }
            conn.reply(m)?;
            Ok(())
        })?
    } else {
        listener.spawn(move |m: &[u8]| {
            if print {
                println!("{}", preview(m));
            }
            Ok(())
        })?
    };

    let (stop, stopped) = mpsc::channel::<()>();
    if std::io::stdin().is_terminal() {
        println!("press Enter to stop");
        thread::spawn(move || {
            let _ = std::io::stdin().read_line(&mut String::new());
            let _ = stop.send(());
        });
    }
    let started = Instant::now();
    let deadline = args.seconds.map(|s| started + Duration::from_secs(s));
    let mut last = (Instant::now(), server.stats());
    loop {
        // A line (or end of input) on the terminal stops the server; without a terminal
        // `stop` stays here unused and only the conditions below do.
        if stopped.recv_timeout(Duration::from_millis(20)) == Ok(()) {
            break;
        }
        let now = server.stats();
        if args.exit_after.is_some_and(|n| now.messages_in >= n)
            || deadline.is_some_and(|d| Instant::now() >= d)
        {
            break;
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
    }
    summary(&server.shutdown());
    Ok(())
}

fn summary(s: &ListenerStats) {
    println!(
        "stopped: {} messages ({} bytes) in, {} replies out, {} connections, \
         {} protocol errors, {} idle timeouts, {} truncated, {} skipped",
        s.messages_in,
        s.bytes_in,
        s.messages_out,
        s.connections_total,
        s.protocol_errors,
        s.idle_timeouts,
        s.truncated,
        s.skipped_frames,
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

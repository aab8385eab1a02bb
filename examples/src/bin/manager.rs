//! The [`Manager`]: listeners and writers kept by address, used from many threads.
//!
//! Starts `N` listeners on loopback (each counts what it receives), dials a writer to each,
//! and has `T` threads write `M` messages each to every address through the one shared
//! manager. Then it shows the typed errors (a second dial of an open address, a write to a
//! closed one), closes everything by address, opens an address again, and checks that every
//! message arrived. Exits non-zero if any did not.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::thread;
use std::time::{Duration, Instant};

use buffstreams_transport_std::{Error, ListenerConfig, Manager, WriterConfig};
use clap::Parser;

/// The Manager from several threads.
#[derive(Debug, Parser)]
#[command(
    name = "manager",
    version,
    allow_negative_numbers = true,
    about = "The Manager: listeners and writers kept by address, shared by threads, with its typed errors",
    after_help = "Examples:\n  \
                  manager                                  3 listeners, 4 threads writing to each\n  \
                  manager --listeners 8 --threads 2"
)]
struct Args {
    /// Listeners on loopback, each with a writer.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=64))]
    listeners: u64,
    /// Threads writing through the one manager.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=64))]
    threads: u64,
    /// Messages per thread and address.
    #[arg(long, default_value_t = 100_000)]
    messages: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(
        args.listeners as usize,
        args.threads as usize,
        args.messages,
    ) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("manager: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(listeners: usize, threads: usize, messages: u64) -> Result<bool, Error> {
    let manager: Manager = Manager::new();

    // BuffStreams `StartListening`: non-blocking, keyed by the bound address.
    let mut addrs = Vec::new();
    let mut counts = Vec::new();
    for _ in 0..listeners {
        let count = Arc::new(AtomicU64::new(0));
        let c = count.clone();
        let addr = manager.start_listening("127.0.0.1:0", ListenerConfig::new(), move |m| {
            if m.len() != 8 {
                return Err(format!("a {}-byte message, expected 8", m.len()).into());
            }
            c.fetch_add(1, Relaxed);
            Ok(())
        })?;
        println!("listening on {addr}");
        addrs.push(addr);
        counts.push(count);
    }
    for &addr in &addrs {
        manager.dial(addr, WriterConfig::new())?;
    }
    match manager.dial(addrs[0], WriterConfig::new()) {
        Err(e @ Error::AlreadyOpen(_)) => println!("second dial: {e}"),
        other => println!("second dial: unexpected {other:?}"),
    }

    // `&Manager` is all the threads need: every method takes `&self`.
    let started = Instant::now();
    thread::scope(|s| {
        let writers: Vec<_> = (0..threads)
            .map(|t| {
                let (manager, addrs) = (&manager, &addrs);
                s.spawn(move || -> Result<(), Error> {
                    for i in 0..messages {
                        for addr in addrs {
                            manager.write(addr, &(t as u64 * messages + i).to_be_bytes())?;
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        writers
            .into_iter()
            .try_for_each(|w| w.join().expect("writer thread panicked"))
    })?;
    for &addr in &addrs {
        manager.flush(addr)?;
    }
    let expected = threads as u64 * messages;
    let deadline = Instant::now() + Duration::from_secs(30);
    while counts.iter().any(|c| c.load(Relaxed) < expected) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(1));
    }
    let secs = started.elapsed().as_secs_f64();
    let total: u64 = counts.iter().map(|c| c.load(Relaxed)).sum();
    println!(
        "{threads} threads x {listeners} addresses x {messages} messages: {total} received in \
         {secs:.3} s ({:.0} msgs/s)",
        total as f64 / secs
    );

    // Closed entries are removed: the address can be used again, the old key is gone.
    manager.close_writer(addrs[0])?;
    match manager.write(addrs[0], b"too late") {
        Err(e @ Error::NotOpen(_)) => println!("write after close_writer: {e}"),
        other => println!("write after close_writer: unexpected {other:?}"),
    }
    manager.close_listener(addrs[0])?;
    let again = manager.start_listening(addrs[0], ListenerConfig::new(), |_| Ok(()))?;
    println!("listening on {again} again after close_listener");
    println!(
        "open now: {} listeners, {} writers; dropping the manager closes them",
        manager.listeners().len(),
        manager.writers().len()
    );
    let ok = counts.iter().all(|c| c.load(Relaxed) == expected);
    if !ok {
        eprintln!("expected {expected} messages on every listener");
    }
    Ok(ok)
}

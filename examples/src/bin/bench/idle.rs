//! `--idle-connections N`: resident memory per idle connection, with N connected peers that
//! send nothing (thread stack, read buffer and decoder per connection).

use std::net::TcpStream;
use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant};

use buffstreams_transport_std::{Listener, ListenerConfig};

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
pub fn run(n: usize) -> ExitCode {
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

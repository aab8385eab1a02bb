#![allow(dead_code, missing_docs)]
//! Helpers for the transport tests: raw hostile peers and a bounded wait.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

pub const LONG: Duration = Duration::from_secs(20);

/// A raw client, for peers that misbehave on purpose.
pub fn raw(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(LONG)).unwrap();
    s
}

pub fn frame(payload: &[u8]) -> Vec<u8> {
    let mut v = (payload.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(payload);
    v
}

/// Blocks until the server closes `s` (EOF or reset); fails after `LONG`.
pub fn wait_closed(s: &mut TcpStream) {
    let mut buf = [0u8; 256];
    let start = Instant::now();
    loop {
        match s.read(&mut buf) {
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!("server kept the connection open for {LONG:?}")
            }
            Ok(0) | Err(_) => return,
            Ok(_) => assert!(start.elapsed() < LONG, "server kept the connection open"),
        }
    }
}

/// Polls `cond` until it holds; for counters that have no event to wait on. Bounded by `LONG`.
pub fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < LONG, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

pub fn send(s: &mut TcpStream, bytes: &[u8]) {
    s.write_all(bytes).unwrap();
}

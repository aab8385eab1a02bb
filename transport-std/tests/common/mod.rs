#![allow(dead_code, missing_docs)]
//! Helpers for the transport tests: raw hostile peers and a bounded wait.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use buffstreams_transport_std::{BigEndian, Listener, ListenerConfig, ListenerHandle};

pub mod proxy;

pub const LONG: Duration = Duration::from_secs(20);

/// A `BigEndian<4>` listener on `addr` that sends every message it gets on a channel.
pub fn collecting(addr: &str, config: ListenerConfig) -> (ListenerHandle, mpsc::Receiver<Vec<u8>>) {
    let (tx, rx) = mpsc::channel();
    let l = Listener::<BigEndian<4>>::bind(addr, config).unwrap();
    let h = l
        .spawn(move |m: &[u8]| Ok(tx.send(m.to_vec())?))
        .expect("spawn the listener");
    (h, rx)
}

/// The next message from a [`collecting`] listener; fails after `LONG`.
pub fn recv(rx: &mpsc::Receiver<Vec<u8>>) -> Vec<u8> {
    rx.recv_timeout(LONG).expect("message not delivered")
}

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

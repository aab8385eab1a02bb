//! `--peer std-baseline`: what a careful std program does without any library: a 64 KiB
//! `BufWriter` writing each message's 4-byte big-endian header and then its payload, a
//! `BufReader` reading them back with `read_exact`. `std-prebuilt` writes one frame built
//! once before the loop: less work than framing each message, a reference rather than a peer.

use std::io::{BufReader, BufWriter, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::thread;

use crate::Peer;
use crate::runner::{Outcome, Run, pump};

pub fn run(run: &Run) -> Outcome {
    let prebuilt = run.peer == Peer::StdPrebuilt;
    let (payload, flush_every) = (run.payload, run.flush_every);
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..run.connections)
        .map(|_| {
            let stop = stop.clone();
            thread::spawn(move || {
                let stream = TcpStream::connect(addr).expect("connect");
                stream.set_nodelay(true).expect("nodelay");
                let mut w = BufWriter::with_capacity(64 * 1024, stream);
                if prebuilt {
                    let mut frame = (payload as u32).to_be_bytes().to_vec();
                    frame.resize(4 + payload, 0xa5);
                    return pump(
                        &mut w,
                        &stop,
                        flush_every,
                        |w| w.write_all(&frame).expect("write"),
                        |w| w.flush().expect("flush"),
                    );
                }
                let msg = vec![0xa5u8; payload];
                pump(
                    &mut w,
                    &stop,
                    flush_every,
                    |w| {
                        let header = u32::try_from(msg.len()).expect("length").to_be_bytes();
                        w.write_all(&header).expect("write");
                        w.write_all(&msg).expect("write");
                    },
                    |w| w.flush().expect("flush"),
                )
            })
        })
        .collect();
    let received = Arc::new(AtomicU64::new(0));
    let mismatches = Arc::new(AtomicU64::new(0));
    let readers: Vec<_> = (0..run.connections)
        .map(|_| {
            let (stream, _) = listener.accept().expect("accept");
            let (received, mismatches) = (received.clone(), mismatches.clone());
            thread::spawn(move || {
                let mut r = BufReader::with_capacity(64 * 1024, stream);
                let mut body = vec![0u8; payload];
                let mut head = [0u8; 4];
                let mut local = 0u64;
                while r.read_exact(&mut head).is_ok() {
                    if u32::from_be_bytes(head) as usize != payload {
                        mismatches.fetch_add(1, Relaxed);
                        break;
                    }
                    if r.read_exact(&mut body).is_err() {
                        break;
                    }
                    local += 1;
                    // Batched like the listener's counters: no shared atomic per message.
                    if local.is_multiple_of(1024) {
                        received.fetch_add(1024, Relaxed);
                    }
                }
                received.fetch_add(local % 1024, Relaxed);
            })
        })
        .collect();
    let (in_window, elapsed) = run.meter(|| received.load(Relaxed), &stop);
    let sent: u64 = writers
        .into_iter()
        .map(|t| t.join().expect("writer thread"))
        .sum();
    for r in readers {
        r.join().expect("reader thread");
    }
    Outcome {
        in_window,
        elapsed,
        sent,
        received: received.load(Relaxed),
        mismatches: mismatches.load(Relaxed),
    }
}

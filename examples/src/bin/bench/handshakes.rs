//! `--handshakes`: TLS connections per second a listener serves, ours (`buffstreams-tls`:
//! transport-std's `Listener` with `with_tls`) beside a tokio-rustls server (`tokio-rustls`:
//! `TlsAcceptor` and `Framed<LengthDelimitedCodec>`), same certificates (mutual TLS, TLS 1.3).
//! The clients are the same for both and as cheap as they come: `--connections` threads, each
//! dialling in a loop with rustls (blocking), sending one message and reading its reply (so the
//! server finished its side) and closing. Interleaved in rounds like the throughput bench.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::thread;
use std::time::{Duration, Instant};

use buffstreams_transport_std::rustls::{ClientConnection, StreamOwned};
use buffstreams_transport_std::{Listener, ListenerConfig};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio_util::codec::{Framed, LengthDelimitedCodec};

use crate::tls::tls;
use crate::{Args, Peer};

/// The request each client sends: a `BigEndian<4>` frame of 16 bytes.
const REQUEST: [u8; 20] = [
    0, 0, 0, 16, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
];

/// One client connection: handshake, request, reply, close. `false` if any of it failed.
fn once(addr: SocketAddr) -> bool {
    let Ok(tcp) = TcpStream::connect(addr) else {
        return false;
    };
    let _ = tcp.set_nodelay(true);
    let Ok(conn) = ClientConnection::new(tls().client.clone(), tls().name.clone()) else {
        return false;
    };
    let mut s = StreamOwned::new(conn, tcp);
    let mut reply = [0u8; 20];
    s.write_all(&REQUEST).is_ok() && s.read_exact(&mut reply).is_ok() && reply == REQUEST
}

/// Our listener: echoes the request.
fn ours() -> (SocketAddr, Box<dyn FnOnce()>) {
    let config = ListenerConfig::new()
        .with_max_connections(4096)
        .with_tls(tls().server.clone());
    let h = Listener::<buffstreams_transport_std::BigEndian<4>>::bind("127.0.0.1:0", config)
        .expect("bind")
        .spawn_with_reply(|m, conn| {
            conn.reply(m)?;
            Ok(())
        })
        .expect("spawn the listener");
    let addr = h.local_addr();
    (
        addr,
        Box::new(move || {
            h.shutdown();
        }),
    )
}

/// A tokio-rustls server: echoes the request.
fn theirs() -> (SocketAddr, Box<dyn FnOnce()>) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let acceptor = tokio_rustls::TlsAcceptor::from(tls().server.clone());
    rt.spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let _ = stream.set_nodelay(true);
                let Ok(stream) = acceptor.accept(stream).await else {
                    return;
                };
                let mut framed = Framed::new(stream, LengthDelimitedCodec::new());
                if let Some(Ok(m)) = framed.next().await {
                    let _ = framed.send(Bytes::from(m.to_vec())).await;
                }
            });
        }
    });
    (addr, Box::new(move || rt.shutdown_background()))
}

/// Handshakes per second against `peer`'s server over `seconds`.
fn measure(peer: Peer, clients: usize, seconds: u64) -> (f64, u64) {
    let (addr, stop_server) = if peer == Peer::TokioRustls {
        theirs()
    } else {
        ours()
    };
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let (done, failed, stop) = (done.clone(), failed.clone(), stop.clone());
            thread::spawn(move || {
                while !stop.load(Relaxed) {
                    if once(addr) {
                        done.fetch_add(1, Relaxed);
                    } else {
                        failed.fetch_add(1, Relaxed);
                    }
                }
            })
        })
        .collect();
    // The first half second is warm-up (the server's threads, the session caches).
    thread::sleep(Duration::from_millis(500));
    let (start, at_start) = (Instant::now(), done.load(Relaxed));
    thread::sleep(Duration::from_secs(seconds));
    let rate = (done.load(Relaxed) - at_start) as f64 / start.elapsed().as_secs_f64();
    stop.store(true, Relaxed);
    for t in threads {
        let _ = t.join();
    }
    stop_server();
    (rate, failed.load(Relaxed))
}

/// `--handshakes`: each peer in turn, `--rounds` times; the median rate and the per-round
/// ratio to tokio-rustls.
pub fn run(args: &Args, peers: &[Peer]) -> ExitCode {
    let seconds = args.seconds.unwrap_or(2);
    let clients = args.connections as usize;
    println!(
        "TLS handshakes per second ({clients} client thread(s), rustls, mutual TLS 1.3, one \
         request and reply each), {} round(s) of {seconds} s",
        args.rounds
    );
    let mut rates = vec![Vec::new(); peers.len()];
    let mut failures = 0;
    for _ in 0..args.rounds {
        for (i, &p) in peers.iter().enumerate() {
            let (rate, failed) = measure(p, clients, seconds);
            eprintln!("  {:<16} {rate:>9.0} handshakes/s", p.name());
            rates[i].push(rate);
            failures += failed;
        }
    }
    let base = peers.iter().position(|&p| p == Peer::TokioRustls);
    for (i, p) in peers.iter().enumerate() {
        let mut r = rates[i].clone();
        r.sort_by(f64::total_cmp);
        let median = r[r.len() / 2];
        let ratio = base.map(|b| {
            let mut q: Vec<f64> = rates[i]
                .iter()
                .zip(&rates[b])
                .map(|(a, b)| a / b.max(1.0))
                .collect();
            q.sort_by(f64::total_cmp);
            q[q.len() / 2]
        });
        match ratio {
            Some(x) => println!(
                "{:<16} {median:>9.0} handshakes/s  {x:.2}x tokio-rustls",
                p.name()
            ),
            None => println!("{:<16} {median:>9.0} handshakes/s", p.name()),
        }
    }
    if failures > 0 {
        println!("FAILED: {failures} connections failed");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

//! `--peer buffstreams`: transport-std's `Writer` into its `Listener`, as an application uses
//! them. The listener's callback checks each message's size; each writer thread calls
//! `Writer::write` (or `send`, or `write_batch`) and leaves the sending to the writer's
//! flusher. `--peer buffstreams-acked`: the same in the acknowledged mode (`with_acks` on both
//! sides: every message kept until the listener acknowledges it). `--peer buffstreams-tls`:
//! the plain mode over mutual TLS (`with_tls` on both sides).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::thread;

use buffstreams_transport_std::{Listener, ListenerConfig, Writer, WriterConfig};

use crate::Peer;
use crate::runner::{Outcome, Run, drain, pump};
use crate::tls::tls;

/// A `Listener` counting size mismatches; its handle (`stats().messages_in` counts what
/// arrived) and the mismatch counter. Shared with the `framing` peer.
pub fn listener(run: &Run) -> (buffstreams_transport_std::ListenerHandle, Arc<AtomicU64>) {
    let acked = run.peer == Peer::BuffstreamsAcked;
    let mismatches = Arc::new(AtomicU64::new(0));
    let seen = mismatches.clone();
    let payload = run.payload;
    let mut config = ListenerConfig::new()
        .with_max_frame_len(payload.max(1))
        .with_max_connections(run.connections + 8)
        .with_acks(acked);
    if run.peer == Peer::BuffstreamsTls {
        config = config.with_tls(tls().server.clone());
    }
    let listener: Listener = Listener::bind("127.0.0.1:0", config).expect("bind");
    let server = listener
        .spawn(move |m: &[u8]| {
            if m.len() != payload {
                seen.fetch_add(1, Relaxed);
            }
            Ok(())
        })
        .expect("spawn the listener");
    (server, mismatches)
}

/// Runs `sender` on `run.connections` threads into a fresh `Listener` and meters it.
pub fn measure(
    run: &Run,
    sender: impl Fn(std::net::SocketAddr, &AtomicBool) -> u64 + Send + Sync + 'static,
) -> Outcome {
    let (server, mismatches) = listener(run);
    let addr = server.local_addr();
    let stop = Arc::new(AtomicBool::new(false));
    let sender = Arc::new(sender);
    let writers: Vec<_> = (0..run.connections)
        .map(|_| {
            let (stop, sender) = (stop.clone(), sender.clone());
            thread::spawn(move || sender(addr, &stop))
        })
        .collect();
    let (in_window, elapsed) = run.meter(|| server.stats().messages_in, &stop);
    let sent: u64 = writers
        .into_iter()
        .map(|t| t.join().expect("writer thread"))
        .sum();
    let received = drain(|| server.stats().messages_in, sent);
    let stats = server.shutdown();
    if run.cpu {
        eprintln!(
            "  listener: {} reads, {} acknowledgements",
            stats.polled_reads, stats.acks_out
        );
    }
    Outcome {
        in_window,
        elapsed,
        sent,
        received,
        mismatches: mismatches.load(Relaxed),
    }
}

pub fn run(run: &Run) -> Outcome {
    let (payload, batch, flush_every, cpu) = (run.payload, run.batch, run.flush_every, run.cpu);
    let acked = run.peer == Peer::BuffstreamsAcked;
    let secure = run.peer == Peer::BuffstreamsTls;
    measure(run, move |addr, stop| {
        let mut config = WriterConfig::new()
            .with_max_frame_len(payload.max(1))
            .with_acks(acked);
        if secure {
            config = config.with_tls(tls().client.clone(), tls().name.clone());
        }
        let w: Writer = Writer::dial(addr, config).expect("dial");
        let msg = vec![0xa5u8; payload];
        let n = if batch == 1 && flush_every == 1 {
            // `send`: write + flush on this thread, like tokio's `SinkExt::send`.
            pump(
                &mut &w,
                stop,
                0,
                |w| {
                    w.send(&msg).expect("send");
                },
                |w| w.flush(),
            )
        } else if batch == 1 {
            pump(
                &mut &w,
                stop,
                flush_every,
                |w| {
                    w.write(&msg).expect("write");
                },
                |w| w.flush(),
            )
        } else {
            let batch: Vec<&[u8]> = vec![&msg[..]; batch];
            let mut n = 0u64;
            while !stop.load(Relaxed) {
                for _ in 0..256 / batch.len() {
                    w.write_batch(batch.iter()).expect("write");
                    n += batch.len() as u64;
                    if flush_every > 0 && n % flush_every < batch.len() as u64 {
                        w.flush();
                    }
                }
            }
            n
        };
        let stats = w.close();
        if cpu {
            eprintln!(
                "  writer: {} batches of {:.0} bytes on average",
                stats.batches,
                stats.bytes_out as f64 / stats.batches.max(1) as f64
            );
        }
        n
    })
}

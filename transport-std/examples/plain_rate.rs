//! The plain path's rate, built with or without the `tls` feature: one `Writer` streaming
//! 110-byte messages into a `Listener` on 127.0.0.1 for a few seconds, the rate printed in
//! millions of messages per second (every message counted, the total checked).
//!
//! ```text
//! cargo run --release -p buffstreams-transport-std --example plain_rate [-- SECONDS]
//! cargo run --release -p buffstreams-transport-std --example plain_rate --features tls
//! ```
//!
//! It is what `docs/PERFORMANCE.md` uses to show that TLS support costs the plain path
//! nothing; the full comparison with other libraries is the `bench` program's.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

use buffstreams_transport_std::{Listener, ListenerConfig, Writer, WriterConfig};

fn main() {
    let seconds: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let listener: Listener =
        Listener::bind("127.0.0.1:0", ListenerConfig::new().with_max_frame_len(110)).expect("bind");
    let handle = listener
        .spawn(|m: &[u8]| {
            if m.len() == 110 {
                Ok(())
            } else {
                Err("a message of the wrong size".into())
            }
        })
        .expect("spawn the listener");
    let addr = handle.local_addr();
    let stop = Arc::new(AtomicBool::new(false));
    let stopping = stop.clone();
    let writing = std::thread::spawn(move || {
        let w: Writer =
            Writer::dial(addr, WriterConfig::new().with_max_frame_len(110)).expect("dial");
        let message = [0xa5u8; 110];
        let mut n = 0u64;
        while !stopping.load(Relaxed) {
            for _ in 0..256 {
                w.write(&message).expect("write");
                n += 1;
            }
        }
        w.close();
        n
    });
    // Half a second of warm-up, then the timed window.
    std::thread::sleep(Duration::from_millis(500));
    let (start, before) = (Instant::now(), handle.stats().messages_in);
    std::thread::sleep(Duration::from_secs(seconds));
    let counted = handle.stats().messages_in - before;
    let rate = counted as f64 / start.elapsed().as_secs_f64();
    stop.store(true, Relaxed);
    let sent = writing.join().expect("the writing thread");
    let deadline = Instant::now() + Duration::from_secs(30);
    while handle.stats().messages_in < sent && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let stats = handle.shutdown();
    assert_eq!(stats.messages_in, sent, "messages lost");
    assert_eq!(stats.callback_errors, 0, "messages of the wrong size");
    println!(
        "{:.2} M msgs/s (tls feature {})",
        rate / 1e6,
        if cfg!(feature = "tls") { "on" } else { "off" }
    );
}

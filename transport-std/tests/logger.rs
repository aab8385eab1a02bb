//! A logger that ships its lines through the very `Writer` whose events it logs (a common
//! set-up: logs over the network). The writer must never call the logger while it holds its
//! own connection or sits half-way through an append: that deadlocked or interleaved bytes.
//! Its own test binary, since a logger is process-wide.

mod common;

use std::sync::{Arc, OnceLock, mpsc};
use std::thread;
use std::time::Duration;

use buffstreams_transport_std::{ListenerConfig, RetryPolicy, Writer, WriterConfig};
use common::*;

static SHIP: OnceLock<Arc<Writer>> = OnceLock::new();

struct ShippingLogger;

impl log::Log for ShippingLogger {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        if !record
            .target()
            .starts_with("buffstreams_transport_std::writer")
        {
            return;
        }
        if let Some(w) = SHIP.get() {
            // Padded like a record with a backtrace: too big for what is left of a full
            // buffer, so a write from inside the writer's own send has to send as well.
            let line = format!("log: {:<3000}", record.args().to_string());
            let _ = w.write(line.as_bytes());
        }
    }
    fn flush(&self) {}
}

fn message(i: u32) -> String {
    format!("m{i:05}{}", ".".repeat(3000))
}

#[test]
fn a_logger_may_write_through_the_writer_it_logs() {
    log::set_logger(&ShippingLogger).unwrap();
    log::set_max_level(log::LevelFilter::Debug);
    let (h, rx) = collecting("127.0.0.1:0", ListenerConfig::new());
    let addr = h.local_addr();
    let policy = RetryPolicy::new()
        .with_max_attempts(Some(1000))
        .with_initial_backoff(Duration::from_millis(5))
        .with_max_backoff(Duration::from_millis(20))
        .with_deadline(Some(Duration::from_secs(15)));
    let w: Arc<Writer> =
        Arc::new(Writer::dial(addr, WriterConfig::new().with_retry(policy)).unwrap());
    assert!(SHIP.set(w.clone()).is_ok());
    w.write(b"before").unwrap();
    assert_eq!(rx.recv_timeout(LONG).unwrap(), b"before");

    // The listener goes away: the writer logs its failed writes and connects while it
    // holds the connection, and the logger writes each line through the writer.
    h.shutdown();
    let (done, finished) = mpsc::channel();
    let writer = w.clone();
    thread::spawn(move || {
        // Big enough that the writing thread fills its buffer and sends (and logs) itself.
        for i in 0..100u32 {
            writer.write(message(i).as_bytes()).unwrap();
        }
        let _ = done.send(());
    });
    // Enough failed attempts, each logged, to fill a buffer with log lines.
    eventually("connect failures", || w.stats().connect_failures >= 40);
    let (h2, rx2) = collecting(&addr.to_string(), ListenerConfig::new());
    finished
        .recv_timeout(LONG)
        .expect("a write never returned: deadlock");
    w.flush();
    // Every message once and in order, each log line whole, none of them cut into another.
    let mut next = 0u32;
    let mut logs = 0;
    while next < 100 {
        let m = rx2
            .recv_timeout(LONG)
            .expect("messages missing after the reconnect");
        let m = String::from_utf8(m).expect("a message was cut or interleaved");
        if m.starts_with("log: writer ") {
            logs += 1;
        } else {
            assert_eq!(m, message(next));
            next += 1;
        }
    }
    // The reconnect's own lines come through as well.
    let st = w.stats();
    assert_eq!((st.dead_lettered, st.reconnects), (0, 1), "{st:?}");
    while let Ok(m) = rx2.recv_timeout(Duration::from_millis(300)) {
        assert!(
            m.starts_with(b"log: writer "),
            "{:?}",
            String::from_utf8_lossy(&m)
        );
        logs += 1;
    }
    assert!(logs > 0, "the logger never wrote through the writer");
    drop(h2);
}

//! Writer behaviour: promptness, concurrency, reconnects and dead letters.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::Duration;

use buffstreams_transport_std::{Error, ListenerConfig, RetryPolicy, Writer, WriterConfig};
use common::*;

#[test]
fn lone_message_goes_out_without_flush() {
    let (h, rx) = collecting("127.0.0.1:0", ListenerConfig::new());
    let w = Writer::<buffstreams_transport_std::BigEndian<4>>::dial(
        h.local_addr(),
        WriterConfig::new(),
    )
    .unwrap();
    assert_eq!(w.write(b"prompt").unwrap(), 10);
    assert_eq!(rx.recv_timeout(LONG).unwrap(), b"prompt");
    // And again after being idle.
    w.write(b"again").unwrap();
    assert_eq!(rx.recv_timeout(LONG).unwrap(), b"again");
}

#[test]
fn send_is_write_plus_flush() {
    let (h, rx) = collecting("127.0.0.1:0", ListenerConfig::new());
    let w: Writer = Writer::dial(h.local_addr(), WriterConfig::new()).unwrap();
    for i in 0..500u32 {
        assert_eq!(w.send(&i.to_be_bytes()).unwrap(), 8);
        assert_eq!(rx.recv_timeout(LONG).unwrap(), i.to_be_bytes());
    }
    assert_eq!(w.stats().messages_out, 500);
}

#[test]
fn drop_flushes_everything() {
    let (h, rx) = collecting("127.0.0.1:0", ListenerConfig::new());
    let w: Writer = Writer::dial(h.local_addr(), WriterConfig::new()).unwrap();
    for i in 0..10_000u32 {
        w.write(&i.to_le_bytes()).unwrap();
    }
    let stats = w.close();
    assert_eq!(stats.messages_out, 10_000);
    for i in 0..10_000u32 {
        assert_eq!(rx.recv_timeout(LONG).unwrap(), i.to_le_bytes());
    }
}

#[test]
fn oversize_write_is_an_error_and_queues_nothing() {
    let (h, rx) = collecting("127.0.0.1:0", ListenerConfig::new());
    let w: Writer =
        Writer::dial(h.local_addr(), WriterConfig::new().with_max_frame_len(8)).unwrap();
    assert!(matches!(w.write(&[0u8; 9]), Err(Error::Encode(_))));
    assert!(matches!(
        w.write_batch([&b"ok"[..], &[0u8; 9][..]]),
        Err(Error::Encode(_))
    ));
    w.write(b"fits").unwrap();
    w.flush();
    assert_eq!(rx.recv_timeout(LONG).unwrap(), b"fits");
    assert!(rx.recv_timeout(Duration::from_millis(100)).is_err());
}

#[test]
fn eight_threads_one_writer_never_interleave() {
    eight_threads(WriterConfig::new());
}

/// Room for two buffers of 1.5 KiB: one thread has its own, seven share the other, and every
/// buffer fills (and is sent by the thread that filled it) every few dozen messages.
#[test]
fn eight_threads_sharing_small_buffers_never_interleave() {
    eight_threads(WriterConfig::new().with_max_buffer(3 * 1024));
}

fn eight_threads(config: WriterConfig) {
    const PER_THREAD: u32 = 20_000;
    let (h, rx) = collecting("127.0.0.1:0", ListenerConfig::new());
    let w: Arc<Writer> = Arc::new(Writer::dial(h.local_addr(), config).unwrap());
    let threads: Vec<_> = (0..8u32)
        .map(|t| {
            let w = w.clone();
            thread::spawn(move || {
                for i in 0..PER_THREAD {
                    // Size varies with i so a torn message would be detected by length and content.
                    let len = 8 + (i % 200) as usize;
                    let mut m = vec![t as u8; len];
                    m[..4].copy_from_slice(&t.to_le_bytes());
                    m[4..8].copy_from_slice(&i.to_le_bytes());
                    if i % 3 == 0 {
                        w.write_batch([&m[..], &m[..]]).unwrap();
                    } else {
                        w.write(&m).unwrap();
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    w.flush();
    let mut next: HashMap<u32, u32> = HashMap::new();
    let mut dup_pending: HashMap<u32, bool> = HashMap::new();
    let expected = 8 * (PER_THREAD + PER_THREAD.div_ceil(3)) as usize;
    for _ in 0..expected {
        let m = rx.recv_timeout(LONG).unwrap();
        let t = u32::from_le_bytes(m[..4].try_into().unwrap());
        let i = u32::from_le_bytes(m[4..8].try_into().unwrap());
        assert_eq!(m.len(), 8 + (i % 200) as usize);
        assert!(m[8..].iter().all(|&b| b == t as u8), "torn message");
        // Per-thread order is preserved; batched messages arrive twice in a row.
        let n = next.entry(t).or_default();
        let pending = dup_pending.entry(t).or_default();
        if *pending {
            assert_eq!(i + 1, *n);
            *pending = false;
        } else {
            assert_eq!(i, *n);
            *n += 1;
            *pending = i % 3 == 0;
        }
    }
    assert!(rx.recv_timeout(Duration::from_millis(100)).is_err());
}

/// Threads that write a few messages and exit without flushing: the flusher sends what they
/// left and hands their buffers to the next threads; nothing waits for `close`.
#[test]
fn threads_that_exit_leave_nothing_behind() {
    let (h, rx) = collecting("127.0.0.1:0", ListenerConfig::new());
    let w: Arc<Writer> = Arc::new(
        Writer::dial(
            h.local_addr(),
            WriterConfig::new().with_max_buffer(3 * 1024),
        )
        .unwrap(),
    );
    for round in 0..20u32 {
        let threads: Vec<_> = (0..3u32)
            .map(|t| {
                let w = w.clone();
                thread::spawn(move || {
                    for i in 0..50u32 {
                        let mut m = [0u8; 12];
                        m[..4].copy_from_slice(&round.to_le_bytes());
                        m[4..8].copy_from_slice(&t.to_le_bytes());
                        m[8..].copy_from_slice(&i.to_le_bytes());
                        w.write(&m).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        // No flush: the round's 150 messages arrive on their own, each thread's in order.
        let mut next = [0u32; 3];
        for k in 0..150 {
            let m = rx
                .recv_timeout(LONG)
                .unwrap_or_else(|e| panic!("round {round}, message {k}: {e}; {:?}", w.stats()));
            assert_eq!(u32::from_le_bytes(m[..4].try_into().unwrap()), round);
            let t = u32::from_le_bytes(m[4..8].try_into().unwrap()) as usize;
            assert_eq!(u32::from_le_bytes(m[8..].try_into().unwrap()), next[t]);
            next[t] += 1;
        }
    }
    assert_eq!(w.stats().messages_out, 20 * 150);
}

/// A message written by an idle thread goes out at once even while another thread streams
/// through the same writer (whose own tail may linger).
#[test]
fn lone_message_is_prompt_while_another_thread_streams() {
    let (h, rx) = collecting("127.0.0.1:0", ListenerConfig::new());
    let w: Arc<Writer> = Arc::new(Writer::dial(h.local_addr(), WriterConfig::new()).unwrap());
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let streamer = {
        let (w, stop) = (w.clone(), stop.clone());
        thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && n < 5_000_000 {
                w.write(&[0u8; 16]).unwrap();
                n += 1;
            }
            n
        })
    };
    let mut rest = 0u64;
    for i in 0..20u8 {
        w.write(&[1, i]).unwrap();
        // Bounded by `LONG`; the streamer's messages are counted on the way.
        loop {
            let m = rx.recv_timeout(LONG).unwrap();
            if m.len() == 2 {
                assert_eq!(m, [1, i]);
                break;
            }
            rest += 1;
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let streamed = streamer.join().unwrap();
    w.flush();
    while rest < streamed {
        let m = rx.recv_timeout(LONG).unwrap();
        assert_eq!(m.len(), 16);
        rest += 1;
    }
}

/// A batch bigger than a thread's buffer still arrives as one run, with no message of
/// another thread inside it.
#[test]
fn a_batch_larger_than_the_buffer_stays_together() {
    let (h, rx) = collecting("127.0.0.1:0", ListenerConfig::new());
    let w: Arc<Writer> = Arc::new(
        Writer::dial(h.local_addr(), WriterConfig::new().with_max_frame_len(1024)).unwrap(),
    );
    let other = {
        let w = w.clone();
        thread::spawn(move || {
            for _ in 0..20_000 {
                w.write(b"x").unwrap();
            }
        })
    };
    let batch: Vec<Vec<u8>> = (0..1000u32)
        .map(|i| {
            let mut m = vec![7u8; 100];
            m[..4].copy_from_slice(&i.to_le_bytes());
            m
        })
        .collect();
    for _ in 0..5 {
        assert_eq!(w.write_batch(&batch).unwrap(), 1000 * 104);
    }
    other.join().unwrap();
    w.flush();
    let (mut singles, mut runs) = (0, 0);
    let mut expect: Option<u32> = None;
    while singles < 20_000 || runs < 5 {
        let m = rx.recv_timeout(LONG).unwrap();
        if m == b"x" {
            assert_eq!(expect, None, "a message landed inside a batch");
            singles += 1;
            continue;
        }
        let i = u32::from_le_bytes(m[..4].try_into().unwrap());
        assert_eq!(i, expect.unwrap_or(0));
        expect = if i == 999 {
            runs += 1;
            None
        } else {
            Some(i + 1)
        };
    }
}

/// Stop the listener, write while it is down, start it again: every message is delivered or
/// dead-lettered, none is lost or duplicated.
#[test]
fn reconnects_and_accounts_for_every_message() {
    let (h, rx) = collecting("127.0.0.1:0", ListenerConfig::new());
    let addr = h.local_addr();
    let dead = Arc::new(Mutex::new(Vec::new()));
    let dead2 = dead.clone();
    let policy = RetryPolicy::new()
        .with_max_attempts(Some(3))
        .with_initial_backoff(Duration::from_millis(5))
        .with_max_backoff(Duration::from_millis(20))
        .with_deadline(Some(Duration::from_millis(500)));
    let w: Writer = Writer::dial(
        addr,
        WriterConfig::new()
            .with_retry(policy)
            .with_dead_letter(move |m| dead2.lock().unwrap().push(m.to_vec())),
    )
    .unwrap();
    let mut written = 0u32;
    let mut delivered = Vec::new();
    for _ in 0..300 {
        w.write(&written.to_le_bytes()).unwrap();
        written += 1;
    }
    w.flush();
    for _ in 0..300 {
        delivered.push(rx.recv_timeout(LONG).unwrap());
    }
    h.shutdown();

    // Down: these cannot be delivered within the policy and go to the dead-letter callback.
    for _ in 0..200 {
        w.write(&written.to_le_bytes()).unwrap();
        written += 1;
    }
    w.flush();

    let (h, rx) = collecting(&addr.to_string(), ListenerConfig::new());
    for _ in 0..300 {
        w.write(&written.to_le_bytes()).unwrap();
        written += 1;
    }
    w.flush();
    let stats = w.close();
    while let Ok(m) = rx.recv_timeout(Duration::from_millis(500)) {
        delivered.push(m);
    }
    let dead = dead.lock().unwrap().clone();
    assert_eq!(delivered.len() + dead.len(), written as usize, "{stats:?}");
    let mut all: Vec<u32> = delivered
        .iter()
        .chain(&dead)
        .map(|m| u32::from_le_bytes(m[..].try_into().unwrap()))
        .collect();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), written as usize, "no message twice");
    assert!(stats.reconnects >= 1, "{stats:?}");
    assert_eq!(stats.dead_lettered as usize, dead.len());
    assert_eq!(stats.in_doubt, 0);
    drop(h);
}

/// The listener comes back within the retry window: nothing is dead-lettered.
#[test]
fn reconnect_within_policy_delivers_everything() {
    let (h, rx) = collecting("127.0.0.1:0", ListenerConfig::new());
    let addr = h.local_addr();
    let policy = RetryPolicy::new()
        .with_max_attempts(Some(1000))
        .with_initial_backoff(Duration::from_millis(5))
        .with_max_backoff(Duration::from_millis(20))
        .with_deadline(Some(Duration::from_secs(15)));
    let w = Arc::new(
        Writer::<buffstreams_transport_std::BigEndian<4>>::dial(
            addr,
            WriterConfig::new().with_retry(policy),
        )
        .unwrap(),
    );
    w.write(b"before").unwrap();
    assert_eq!(rx.recv_timeout(LONG).unwrap(), b"before");
    h.shutdown();
    for i in 0..100u32 {
        w.write(&i.to_le_bytes()).unwrap();
    }
    // Wait until the writer has noticed and is retrying, then bring the listener back.
    eventually("connect failures", || w.stats().connect_failures > 0);
    let (h2, rx2) = collecting(&addr.to_string(), ListenerConfig::new());
    w.flush();
    for i in 0..100u32 {
        assert_eq!(rx2.recv_timeout(LONG).unwrap(), i.to_le_bytes());
    }
    assert_eq!(w.stats().dead_lettered, 0);
    assert!(w.take_dead_letters().is_empty());
    drop(h2);
}

#[test]
fn dead_letter_queue_without_callback() {
    let (h, _rx) = collecting("127.0.0.1:0", ListenerConfig::new());
    let addr = h.local_addr();
    let w: Writer =
        Writer::dial(addr, WriterConfig::new().with_retry(RetryPolicy::never())).unwrap();
    h.shutdown();
    w.write(b"lost-1").unwrap();
    w.write(b"lost-2").unwrap();
    w.flush();
    assert_eq!(
        w.take_dead_letters(),
        vec![b"lost-1".to_vec(), b"lost-2".to_vec()]
    );
}

/// No limit in attempts: only the deadline gives up, after many more failures than the
/// default eight.
#[test]
fn unlimited_attempts_give_up_at_the_deadline_only() {
    let (h, _rx) = collecting("127.0.0.1:0", ListenerConfig::new());
    let addr = h.local_addr();
    let policy = RetryPolicy::new()
        .with_max_attempts(None)
        .with_initial_backoff(Duration::from_millis(1))
        .with_max_backoff(Duration::from_millis(2))
        .with_deadline(Some(Duration::from_millis(400)));
    let w: Writer = Writer::dial(addr, WriterConfig::new().with_retry(policy)).unwrap();
    h.shutdown();
    w.write(b"lost").unwrap();
    w.flush();
    assert_eq!(w.take_dead_letters(), vec![b"lost".to_vec()]);
    let st = w.stats();
    assert!(st.connect_failures > 8, "{st:?}");
}

/// The dead-letter callback runs outside the writer's locks: it may write and flush through
/// the same writer (here: re-queue each message once).
#[test]
fn dead_letter_callback_may_write_through_the_writer() {
    let (h, _rx) = collecting("127.0.0.1:0", ListenerConfig::new());
    let addr = h.local_addr();
    let slot: Arc<std::sync::OnceLock<std::sync::Weak<Writer>>> = Arc::default();
    let (requeued_tx, requeued_rx) = mpsc::channel::<Vec<u8>>();
    let slot2 = slot.clone();
    let w: Arc<Writer> = Arc::new(
        Writer::dial(
            addr,
            WriterConfig::new()
                .with_retry(RetryPolicy::never())
                .with_dead_letter(move |m| {
                    if m.starts_with(b"retry-") {
                        return; // dead a second time: give up
                    }
                    let mut again = b"retry-".to_vec();
                    again.extend_from_slice(m);
                    if let Some(w) = slot2.get().and_then(std::sync::Weak::upgrade) {
                        w.write(&again).unwrap();
                        // Would deadlock if callbacks ran under a buffer's send lock.
                        w.flush();
                    }
                    requeued_tx.send(again).unwrap();
                }),
        )
        .unwrap(),
    );
    slot.set(Arc::downgrade(&w)).unwrap();
    h.shutdown();
    for i in 0..3u8 {
        w.write(&[b'm', i]).unwrap();
        w.flush();
    }
    // The flusher may have sent (and dead-lettered) some of them: its callbacks run on its
    // thread, after the send.
    let requeued: Vec<Vec<u8>> = (0..3)
        .map(|_| requeued_rx.recv_timeout(LONG).unwrap())
        .collect();
    // The re-queued messages go to a listener on the same port.
    let (h, rx) = collecting(&addr.to_string(), ListenerConfig::new());
    w.flush();
    // A re-queued message is delivered or dead a second time (if the flusher sent it before
    // the listener was back), never stuck or lost.
    let stats = w.stats();
    let dead_twice = stats.dead_lettered - 3;
    for _ in dead_twice..3 {
        let m = rx.recv_timeout(LONG).unwrap();
        assert!(requeued.contains(&m), "{m:?}");
    }
    assert!(
        rx.recv_timeout(Duration::from_millis(100)).is_err(),
        "{stats:?}"
    );
    drop(h);
}

#[test]
fn dial_fails_cleanly_when_nobody_listens() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let r = Writer::<buffstreams_transport_std::BigEndian<4>>::dial(
        port,
        WriterConfig::new().with_retry(RetryPolicy::never()),
    );
    assert!(matches!(r, Err(Error::Io(_))));
}

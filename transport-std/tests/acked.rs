//! The acknowledged mode over 127.0.0.1: every message is delivered once or reported, through
//! connections cut mid-stream, a listener that stops calling back, and peers without the mode.
//! (The listener process killed with SIGKILL is in `acked_crash.rs`.)

mod common;

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use buffstreams_transport_std::{
    BigEndian, Delivery, Error, Listener, ListenerConfig, ListenerHandle, RetryPolicy, SenderError,
    WindowFull, Writer, WriterConfig,
};
use common::LONG;

type Seen = Arc<Mutex<Vec<(u64, Delivery)>>>;

/// An acknowledged listener recording every message's index (its first 8 bytes) and delivery.
fn recording(config: ListenerConfig) -> (ListenerHandle, Seen) {
    let seen: Seen = Arc::default();
    let s = seen.clone();
    let h = Listener::<BigEndian<4>>::bind("127.0.0.1:0", config.with_acks(true))
        .unwrap()
        .spawn_with_reply(move |m, conn| {
            let index = u64::from_be_bytes(m[..8].try_into().unwrap());
            s.lock()
                .unwrap()
                .push((index, conn.delivery().expect("a delivery")));
            Ok(())
        })
        .unwrap();
    (h, seen)
}

fn message(i: u64) -> Vec<u8> {
    let mut m = vec![0x3c; 110];
    m[..8].copy_from_slice(&i.to_be_bytes());
    m
}

fn acked_writer(addr: SocketAddr) -> WriterConfig {
    let _ = addr;
    WriterConfig::new()
        .with_acks(true)
        .with_reply_wait(LONG)
        .with_retry(
            RetryPolicy::new()
                .with_max_attempts(Some(100))
                .with_deadline(Some(LONG)),
        )
}

/// Every index in `0..n` exactly once, in order, none flagged as a possible repeat.
fn exactly_once(seen: &[(u64, Delivery)], n: u64) {
    let indexes: Vec<u64> = seen.iter().map(|(i, _)| *i).collect();
    let missing = (0..n).find(|i| indexes.get(*i as usize) != Some(i));
    assert!(
        missing.is_none(),
        "first out of place: {missing:?} ({} seen)",
        seen.len()
    );
    assert_eq!(indexes.len() as u64, n);
    for (k, (_, d)) in seen.iter().enumerate() {
        assert_eq!(d.seq, k as u64 + 1);
        assert!(!d.may_repeat, "{d:?}");
    }
}

#[test]
fn every_message_is_delivered_once_and_acknowledged_in_a_few_acks() {
    const N: u64 = 200_000;
    let (server, seen) = recording(ListenerConfig::new());
    let writer: Writer =
        Writer::dial(server.local_addr(), acked_writer(server.local_addr())).unwrap();
    for i in 0..N {
        writer.write(&message(i)).unwrap();
    }
    let stats = writer.close();
    assert_eq!(
        (stats.messages_out, stats.acked, stats.dead_lettered),
        (N, N, 0),
        "{stats:?}"
    );
    let lstats = server.shutdown();
    exactly_once(&seen.lock().unwrap(), N);
    let session = seen.lock().unwrap()[0].1.session;
    assert!(
        seen.lock()
            .unwrap()
            .iter()
            .all(|(_, d)| d.session == session)
    );
    // Coalesced: far fewer acknowledgements than messages.
    assert!(lstats.acks_out * 50 < N, "{lstats:?}");
}

/// A proxy that forwards both ways and cuts each connection after `cut` bytes from the
/// writer, for the first `cuts` connections.
fn cutting_proxy(to: SocketAddr, cut: usize, cuts: usize) -> SocketAddr {
    let front = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = front.local_addr().unwrap();
    thread::spawn(move || {
        for (k, client) in front.incoming().enumerate() {
            let Ok(client) = client else { return };
            let server = TcpStream::connect(to).unwrap();
            let limit = if k < cuts { cut } else { usize::MAX };
            let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            // Listener to writer: as is.
            thread::spawn(move || pipe(s2, c2, usize::MAX));
            thread::spawn(move || pipe(client, server, limit));
        }
    });
    addr
}

fn pipe(mut from: TcpStream, mut to: TcpStream, limit: usize) {
    let mut buf = [0u8; 16 * 1024];
    let mut moved = 0;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n.min(limit - moved),
        };
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
        moved += n;
        if moved >= limit {
            break;
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

#[test]
fn connections_cut_mid_stream_lose_and_repeat_nothing() {
    const N: u64 = 100_000;
    let (server, seen) = recording(ListenerConfig::new());
    // Three connections cut after 1 MB each (mid-frame, with acknowledgements in flight).
    let proxy = cutting_proxy(server.local_addr(), 1_000_003, 3);
    let writer: Writer = Writer::dial(proxy, acked_writer(proxy)).unwrap();
    for i in 0..N {
        writer.write(&message(i)).unwrap();
    }
    let stats = writer.close();
    assert_eq!((stats.acked, stats.dead_lettered), (N, 0), "{stats:?}");
    assert!(stats.reconnects >= 3 && stats.resent > 0, "{stats:?}");
    server.shutdown();
    // The listener remembers the session: each welcome told the writer where to resume, and
    // nothing was handed to the callback twice.
    exactly_once(&seen.lock().unwrap(), N);
}

#[test]
fn connections_closed_by_the_listener_lose_nothing() {
    const N: u64 = 3_000;
    // The idle timeout closes the connection during each pause.
    let (server, seen) =
        recording(ListenerConfig::new().with_idle_timeout(Some(Duration::from_millis(100))));
    let writer: Writer =
        Writer::dial(server.local_addr(), acked_writer(server.local_addr())).unwrap();
    for i in 0..N {
        writer.write(&message(i)).unwrap();
        if i % 1000 == 999 {
            thread::sleep(Duration::from_millis(300));
        }
    }
    let stats = writer.close();
    assert_eq!((stats.acked, stats.dead_lettered), (N, 0), "{stats:?}");
    let lstats = server.shutdown();
    assert!(lstats.idle_timeouts >= 2, "{lstats:?}");
    exactly_once(&seen.lock().unwrap(), N);
}

#[test]
fn a_full_window_blocks_or_refuses_and_loses_nothing() {
    // The callback stops until `go` is set: the listener stops acknowledging.
    let go = Arc::new(AtomicBool::new(false));
    let delivered = Arc::new(AtomicU64::new(0));
    let (g, d) = (go.clone(), delivered.clone());
    let server =
        Listener::<BigEndian<4>>::bind("127.0.0.1:0", ListenerConfig::new().with_acks(true))
            .unwrap()
            .spawn(move |_: &[u8]| {
                let deadline = Instant::now() + LONG;
                while !g.load(SeqCst) && Instant::now() < deadline {
                    thread::sleep(Duration::from_millis(1));
                }
                d.fetch_add(1, SeqCst);
                Ok(())
            })
            .unwrap();
    let addr = server.local_addr();
    // Refusing: `write` says so once 100 messages are unacknowledged.
    let refusing: Writer = Writer::dial(
        addr,
        acked_writer(addr)
            .with_ack_window(1 << 20, 100)
            .with_window_full(WindowFull::Error),
    )
    .unwrap();
    let mut accepted = 0u64;
    let deadline = Instant::now() + LONG;
    loop {
        match refusing.write(&message(accepted)) {
            Ok(_) => accepted += 1,
            Err(Error::WindowFull) => break,
            Err(e) => panic!("{e}"),
        }
        refusing.flush();
        assert!(Instant::now() < deadline, "the window never filled");
    }
    assert!((100..=101).contains(&accepted), "{accepted}");
    // Blocking: a thread writing 500 messages through a window of 100 waits.
    let blocking: Writer =
        Writer::dial(addr, acked_writer(addr).with_ack_window(1 << 20, 100)).unwrap();
    let (tx, rx) = mpsc::channel();
    let writer = thread::spawn(move || {
        for i in 0..500 {
            blocking.write(&message(i)).unwrap();
            blocking.flush();
        }
        tx.send(()).unwrap();
        blocking.close()
    });
    assert!(
        rx.recv_timeout(Duration::from_millis(500)).is_err(),
        "the window did not hold"
    );
    go.store(true, SeqCst);
    rx.recv_timeout(LONG).expect("the writer never got room");
    let stats = writer.join().unwrap();
    assert!(stats.window_waits > 0, "{stats:?}");
    assert_eq!((stats.acked, stats.dead_lettered), (500, 0), "{stats:?}");
    let refused_stats = refusing.close();
    assert_eq!(
        (refused_stats.acked, refused_stats.dead_lettered),
        (accepted, 0)
    );
    server.shutdown();
    assert_eq!(delivered.load(SeqCst), 500 + accepted);
}

#[test]
fn an_acknowledged_writer_is_refused_by_a_plain_listener_with_a_typed_error() {
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    let plain = Listener::<BigEndian<4>>::bind("127.0.0.1:0", ListenerConfig::new())
        .unwrap()
        .spawn(move |m: &[u8]| Ok(tx.send(m.to_vec())?))
        .unwrap();
    let config =
        acked_writer(plain.local_addr()).with_retry(RetryPolicy::new().with_max_attempts(Some(2)));
    let refused = Writer::<BigEndian<4>>::dial(plain.local_addr(), config);
    assert!(
        matches!(refused, Err(Error::Acked(SenderError::Refused))),
        "{refused:?}"
    );
    let stats = plain.shutdown();
    // The plain listener read the hello as a header declaring 4 GiB: refused, nothing delivered.
    assert!(stats.protocol_errors >= 1, "{stats:?}");
    assert!(rx.try_recv().is_err());
}

#[test]
fn a_plain_writer_is_refused_by_an_acknowledged_listener() {
    let (server, seen) = recording(ListenerConfig::new());
    let mut plain = TcpStream::connect(server.local_addr()).unwrap();
    plain
        .write_all(&[0, 0, 0, 5, b'h', b'e', b'l', b'l', b'o'])
        .unwrap();
    plain.set_read_timeout(Some(LONG)).unwrap();
    // Closed at the first byte, nothing sent back, nothing delivered.
    let mut back = Vec::new();
    let _ = plain.read_to_end(&mut back);
    assert!(back.is_empty());
    let stats = server.shutdown();
    assert_eq!(stats.handshake_errors, 1, "{stats:?}");
    assert_eq!(stats.messages_in, 0);
    assert!(seen.lock().unwrap().is_empty());
}

#[test]
fn a_header_that_could_read_the_hello_as_a_length_is_refused_at_configuration() {
    let l = Listener::<BigEndian<1>>::bind("127.0.0.1:0", ListenerConfig::new().with_acks(true));
    assert!(matches!(l, Err(Error::Config(_))), "{l:?}");
    let w = Writer::<BigEndian<2>>::dial(
        "127.0.0.1:9",
        WriterConfig::new()
            .with_acks(true)
            .with_max_frame_len(65535),
    );
    assert!(matches!(w, Err(Error::Config(_))), "{w:?}");
}

#[test]
fn replies_travel_beside_the_acknowledgements() {
    let server =
        Listener::<BigEndian<4>>::bind("127.0.0.1:0", ListenerConfig::new().with_acks(true))
            .unwrap()
            .spawn_with_reply(|m, conn| {
                conn.reply(m)?;
                Ok(())
            })
            .unwrap();
    let replies = Arc::new(Mutex::new(Vec::new()));
    let r = replies.clone();
    let writer: Writer = Writer::dial(
        server.local_addr(),
        acked_writer(server.local_addr())
            .with_on_reply(move |m| r.lock().unwrap().push(m.to_vec())),
    )
    .unwrap();
    for i in 0..1000 {
        writer.write(&message(i)).unwrap();
    }
    let stats = writer.close();
    assert_eq!((stats.acked, stats.replies), (1000, 1000), "{stats:?}");
    let got: HashSet<Vec<u8>> = replies.lock().unwrap().iter().cloned().collect();
    assert_eq!(got.len(), 1000);
    assert!((0..1000).all(|i| got.contains(&message(i))));
    server.shutdown();
}

#[test]
fn a_writer_that_gave_up_starts_a_new_session_and_recovers() {
    let (server, seen) = recording(ListenerConfig::new());
    let to = server.local_addr();
    // A proxy that can go "down": it then swallows what the writer sends on the open
    // connection, closes it 100 ms later, and closes new connections at once.
    let down = Arc::new(AtomicBool::new(false));
    let front = TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy = front.local_addr().unwrap();
    let d = down.clone();
    thread::spawn(move || {
        for client in front.incoming() {
            let Ok(mut client) = client else { return };
            if d.load(SeqCst) {
                continue; // dropped: closed at once
            }
            let mut server = TcpStream::connect(to).unwrap();
            let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            thread::spawn(move || pipe(s2, c2, usize::MAX));
            let d2 = d.clone();
            thread::spawn(move || {
                let mut buf = [0u8; 16 * 1024];
                let mut since = None;
                client
                    .set_read_timeout(Some(Duration::from_millis(5)))
                    .unwrap();
                loop {
                    if d2.load(SeqCst) {
                        let t = *since.get_or_insert_with(Instant::now);
                        if t.elapsed() > Duration::from_millis(100) {
                            break;
                        }
                    }
                    match client.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) if !d2.load(SeqCst) => {
                            if server.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                        Ok(_) => {} // swallowed
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                        Err(_) => break,
                    }
                }
                let _ = client.shutdown(Shutdown::Both);
                let _ = server.shutdown(Shutdown::Both);
            });
        }
    });
    let dead = Arc::new(Mutex::new(Vec::new()));
    let dl = dead.clone();
    let writer: Writer = Writer::dial(
        proxy,
        WriterConfig::new()
            .with_acks(true)
            .with_reply_wait(LONG)
            .with_retry(RetryPolicy::new().with_max_attempts(Some(3)))
            .with_dead_letter(move |m| dl.lock().unwrap().push(m.to_vec())),
    )
    .unwrap();
    for i in 0..100 {
        writer.write(&message(i)).unwrap();
    }
    writer.flush();
    let deadline = Instant::now() + LONG;
    while seen.lock().unwrap().len() < 100 {
        assert!(Instant::now() < deadline);
        thread::sleep(Duration::from_millis(1));
    }
    // Down: what is written now is lost on the way and cannot be re-sent within the retry
    // policy (it was numbered: the writer must give up its session).
    down.store(true, SeqCst);
    for i in 100..200 {
        writer.write(&message(i)).unwrap();
    }
    writer.flush();
    let deadline = Instant::now() + LONG;
    while writer.stats().dead_lettered < 100 {
        assert!(Instant::now() < deadline, "{:?}", writer.stats());
        thread::sleep(Duration::from_millis(5));
    }
    // Up again, the same listener process: the writer's next messages arrive, in a new session.
    down.store(false, SeqCst);
    for i in 200..300 {
        writer.write(&message(i)).unwrap();
    }
    let stats = writer.close();
    server.shutdown();
    assert_eq!((stats.dead_lettered, stats.acked), (100, 200), "{stats:?}");
    let seen = seen.lock().unwrap();
    let indexes: Vec<u64> = seen.iter().map(|(i, _)| *i).collect();
    assert_eq!(indexes, (0..100).chain(200..300).collect::<Vec<_>>());
    assert_ne!(seen[0].1.session, seen[100].1.session);
    assert_eq!(seen[100].1.seq, 1);
    let dead: Vec<u64> = dead
        .lock()
        .unwrap()
        .iter()
        .map(|m| u64::from_be_bytes(m[..8].try_into().unwrap()))
        .collect();
    assert_eq!(dead, (100..200).collect::<Vec<_>>());
}

#[test]
fn a_message_skipped_as_oversize_keeps_its_number_and_counts_as_handled() {
    use buffstreams_transport_std::Oversize;
    let (server, seen) = recording(
        ListenerConfig::new()
            .with_max_frame_len(200)
            .with_oversize(Oversize::Skip),
    );
    let writer: Writer = Writer::dial(
        server.local_addr(),
        acked_writer(server.local_addr()).with_max_frame_len(1000),
    )
    .unwrap();
    let mut big = message(1);
    big.resize(500, 0);
    for m in [message(0), big, message(2), message(3)] {
        writer.write(&m).unwrap();
    }
    let stats = writer.close();
    assert_eq!((stats.acked, stats.dead_lettered), (4, 0), "{stats:?}");
    let lstats = server.shutdown();
    assert_eq!(lstats.skipped, 1);
    let got: Vec<(u64, u64)> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|(i, d)| (*i, d.seq))
        .collect();
    // The numbers stay the writer's: the skipped message was number 2.
    assert_eq!(got, [(0, 1), (2, 3), (3, 4)]);
}

#[test]
fn connections_evicted_for_newcomers_lose_nothing() {
    const N: u64 = 3_000;
    // One slot: each newcomer evicts the writer's connection (its last message is older than
    // the grace), and the writer's reconnect evicts the newcomer in turn.
    let (server, seen) = recording(
        ListenerConfig::new()
            .with_max_connections(1)
            .with_eviction_grace(Duration::from_millis(20)),
    );
    let addr = server.local_addr();
    let writer: Writer = Writer::dial(addr, acked_writer(addr)).unwrap();
    let mut newcomers = Vec::new();
    for i in 0..N {
        writer.write(&message(i)).unwrap();
        if i % 1000 == 999 {
            writer.flush();
            thread::sleep(Duration::from_millis(100));
            newcomers.push(TcpStream::connect(addr).unwrap());
            thread::sleep(Duration::from_millis(100));
        }
    }
    let stats = writer.close();
    assert_eq!((stats.acked, stats.dead_lettered), (N, 0), "{stats:?}");
    let lstats = server.shutdown();
    assert!(lstats.evictions >= 3, "{lstats:?}");
    exactly_once(&seen.lock().unwrap(), N);
}

/// A listener that welcomes every connection (as one that knows nothing of the session) and
/// then drops it: each handshake succeeds, nothing is ever acknowledged. The writer must not
/// reconnect for ever: connections lost without progress count against its retry policy, and
/// once it is spent the messages go to the dead letters.
#[test]
fn a_listener_that_welcomes_then_drops_every_connection_is_given_up_on() {
    use buffstreams_transport_std::framing::acked::{HELLO_LEN, Hello, welcome};
    let front = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = front.local_addr().unwrap();
    let accepted = Arc::new(AtomicU64::new(0));
    let count = accepted.clone();
    thread::spawn(move || {
        for conn in front.incoming() {
            let Ok(mut conn) = conn else { return };
            count.fetch_add(1, SeqCst);
            let mut hello = [0u8; HELLO_LEN];
            if conn.read_exact(&mut hello).is_err() {
                continue;
            }
            let Ok(Some(hello)) = Hello::parse(&hello) else {
                continue;
            };
            let w = welcome(hello.first_seq - 1);
            let mut frame = (w.len() as u32).to_be_bytes().to_vec();
            frame.extend_from_slice(&w);
            let _ = conn.write_all(&frame);
            // Drops it, with whatever the writer sends unread.
        }
    });
    let dead = Arc::new(Mutex::new(Vec::new()));
    let d = dead.clone();
    let config = WriterConfig::new()
        .with_acks(true)
        .with_retry(
            RetryPolicy::new()
                .with_max_attempts(Some(4))
                .with_initial_backoff(Duration::from_millis(1))
                .with_deadline(None),
        )
        .with_reply_wait(LONG)
        .with_dead_letter(move |m| d.lock().unwrap().push(m.to_vec()));
    let started = Instant::now();
    let writer: Writer = Writer::dial(addr, config).unwrap();
    writer.write(&message(7)).unwrap();
    writer.flush();
    let stats = writer.close();
    assert!(
        started.elapsed() < LONG,
        "gave up only after {:?}",
        started.elapsed()
    );
    assert_eq!(*dead.lock().unwrap(), [message(7)], "{stats:?}");
    assert_eq!((stats.acked, stats.dead_lettered), (0, 1), "{stats:?}");
    let n = accepted.load(SeqCst);
    assert!((2..=8).contains(&n), "{n} connections: {stats:?}");
}

#[test]
fn a_stream_is_acknowledged_at_the_listeners_bounds_without_waiting_for_quiet() {
    // An acknowledgement delay longer than the test: every acknowledgement must come from
    // the bound of 4 messages.
    let (server, seen) = recording(
        ListenerConfig::new()
            .with_ack_delay(Duration::from_secs(3600))
            .with_ack_every(4, 1 << 20),
    );
    let writer: Writer =
        Writer::dial(server.local_addr(), acked_writer(server.local_addr())).unwrap();
    for i in 0..8 {
        writer.write(&message(i)).unwrap();
    }
    writer.flush();
    // Acknowledged (cumulatively: one frame may cover all 8 when they arrive together).
    common::eventually("the acknowledgements", || writer.stats().acked == 8);
    assert!((1..=2).contains(&server.stats().acks_out));
    exactly_once(&seen.lock().unwrap(), 8);
    assert_eq!(
        ListenerConfig::new().with_ack_every(0, 0).ack_every(),
        (1, 1)
    );
}

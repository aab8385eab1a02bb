//! Hostile peers that try to lock everyone else out by holding connections: idle ones,
//! half-header ones ("slowloris"), trickling ones, many from one address. The defaults must
//! serve a well-behaved newcomer anyway, and close the attacker's connections, not the
//! legitimate ones.

mod common;

use std::io::{ErrorKind, Read};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use buffstreams_transport_std::{ListenerConfig, RetryPolicy, Writer, WriterConfig};
use common::*;

/// Whether the server has closed `s` (EOF or reset), without waiting.
fn closed_by_server(s: &TcpStream) -> bool {
    s.set_nonblocking(true).unwrap();
    let mut byte = [0u8; 1];
    let closed = match (&*s).read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != ErrorKind::WouldBlock,
    };
    s.set_nonblocking(false).unwrap();
    closed
}

/// Opens `n` connections that send `prefix` (nothing, or half a header) and then nothing.
fn attackers(addr: SocketAddr, n: usize, prefix: &[u8]) -> Vec<TcpStream> {
    (0..n)
        .map(|_| {
            let mut s = raw(addr);
            if !prefix.is_empty() {
                send(&mut s, prefix);
            }
            s
        })
        .collect()
}

#[test]
fn idle_and_half_header_attackers_do_not_lock_out_new_clients() {
    const CAP: usize = 200;
    let grace = Duration::from_millis(300);
    let (h, rx) = collecting(
        "127.0.0.1:0",
        ListenerConfig::new()
            .with_max_connections(CAP)
            .with_eviction_grace(grace),
    );
    let addr = h.local_addr();
    // The attacker fills every slot: idle connections and half-header ones.
    let mut attack = attackers(addr, 150, &[]);
    attack.extend(attackers(addr, CAP - 150, &[0, 0]));
    eventually("the attacker's connections", || {
        h.stats().connections_open == CAP as u64
    });
    thread::sleep(grace + Duration::from_millis(50));

    // A legitimate client that has completed a message, and one that is idle and young.
    let mut old = raw(addr);
    send(&mut old, &frame(b"old"));
    assert_eq!(recv(&rx), b"old");
    let mut young = raw(addr);

    // New clients, each with messages: all served, none refused.
    let started = Instant::now();
    let mut clients: Vec<TcpStream> = (0..20).map(|_| raw(addr)).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        for j in 0..10 {
            send(c, &frame(format!("{i}:{j}").as_bytes()));
        }
    }
    let mut got: Vec<Vec<u8>> = (0..200).map(|_| recv(&rx)).collect();
    let served_in = started.elapsed();
    got.sort();
    let mut want: Vec<Vec<u8>> = (0..20)
        .flat_map(|i| (0..10).map(move |j| format!("{i}:{j}").into_bytes()))
        .collect();
    want.sort();
    assert_eq!(got, want);
    eprintln!("20 new clients served in {served_in:?} while the attacker held {CAP} slots");

    let st = h.stats();
    assert_eq!(st.evictions, 22, "{st:?}");
    assert_eq!(st.connections_refused, 0, "{st:?}");
    // The evicted were the attacker's, the oldest first (the idle ones were opened first).
    eventually("the evicted attackers to see the close", || {
        attack.iter().filter(|s| closed_by_server(s)).count() == 22
    });
    assert!(attack.iter().take(22).all(closed_by_server));
    // The legitimate connections, old and young, are still served.
    assert!(!closed_by_server(&old) && !closed_by_server(&young));
    send(&mut young, &frame(b"young"));
    assert_eq!(recv(&rx), b"young");
    send(&mut old, &frame(b"old again"));
    assert_eq!(recv(&rx), b"old again");
    assert!(clients.iter().all(|c| !closed_by_server(c)));
    h.shutdown();
}

#[test]
fn the_frame_deadline_closes_stalled_and_trickling_peers_only() {
    let limit = Duration::from_millis(500);
    let (h, rx) = collecting(
        "127.0.0.1:0",
        ListenerConfig::new().with_frame_timeout(Some(limit)),
    );
    let addr = h.local_addr();
    let mut stalled = attackers(addr, 100, &[0, 0]);
    let idle = raw(addr);
    // A peer that declares 10 bytes and sends one every 100 ms: never idle, never done.
    let trickler = thread::spawn(move || {
        let mut s = raw(addr);
        send(&mut s, &[0, 0, 0, 10]);
        for _ in 0..20 {
            thread::sleep(Duration::from_millis(100));
            if std::io::Write::write_all(&mut s, &[7]).is_err() {
                return true;
            }
        }
        closed_by_server(&s)
    });
    // A slow but honest peer: each 20-byte message takes 250 ms to send, six in a row take
    // three times the deadline, which restarts with every message.
    let honest = thread::spawn(move || {
        let mut s = raw(addr);
        for i in 0..6u8 {
            let f = frame(&[i; 20]);
            for piece in f.chunks(5) {
                send(&mut s, piece);
                thread::sleep(Duration::from_millis(50));
            }
        }
        s
    });
    for s in &mut stalled {
        wait_closed(s);
    }
    assert!(
        trickler.join().unwrap(),
        "the trickling peer was not closed"
    );
    let honest = honest.join().unwrap();
    for i in 0..6u8 {
        assert_eq!(recv(&rx), [i; 20]);
    }
    eventually("the frame timeouts", || h.stats().frame_timeouts == 101);
    let st = h.stats();
    assert_eq!((st.idle_timeouts, st.protocol_errors), (0, 0), "{st:?}");
    assert!(
        !closed_by_server(&idle),
        "an idle peer is the idle timeout's business"
    );
    assert!(!closed_by_server(&honest));
    h.shutdown();
}

#[test]
fn a_cap_per_address_refuses_only_that_address() {
    let (h, rx) = collecting(
        "127.0.0.1:0",
        ListenerConfig::new().with_max_connections_per_ip(Some(5)),
    );
    let addr = h.local_addr();
    let _five = attackers(addr, 5, &[]);
    eventually("five connections", || h.stats().connections_open == 5);
    let mut sixth = raw(addr);
    wait_closed(&mut sixth);
    assert_eq!(h.stats().per_ip_refused, 1);
    // Another address on the loopback network is served (Linux routes all of 127/8 there).
    let other = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    other
        .bind(&"127.0.0.2:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    other.connect(&addr.into()).unwrap();
    let mut other: TcpStream = other.into();
    send(&mut other, &frame(b"from 127.0.0.2"));
    assert_eq!(recv(&rx), b"from 127.0.0.2");
    h.shutdown();
}

#[test]
fn an_evicted_writer_reconnects_and_loses_nothing() {
    let grace = Duration::from_millis(100);
    let (h, rx) = collecting(
        "127.0.0.1:0",
        ListenerConfig::new()
            .with_max_connections(1)
            .with_eviction_grace(grace),
    );
    let addr = h.local_addr();
    let w: Writer = Writer::dial(
        addr,
        WriterConfig::new().with_retry(RetryPolicy::new().with_max_attempts(Some(20))),
    )
    .unwrap();
    w.write(b"a").unwrap();
    assert_eq!(recv(&rx), b"a");
    thread::sleep(grace * 3);
    // A newcomer takes the only slot: the writer's connection, idle longest, is evicted.
    let mut n = raw(addr);
    send(&mut n, &frame(b"n"));
    assert_eq!(recv(&rx), b"n");
    assert_eq!(h.stats().evictions, 1);
    drop(n);
    eventually("the slot to free", || h.stats().connections_open == 0);
    for m in [&b"b"[..], b"c", b"d"] {
        w.write(m).unwrap();
    }
    w.flush();
    for m in [&b"b"[..], b"c", b"d"] {
        assert_eq!(recv(&rx), m);
    }
    let ws = w.close();
    assert!(ws.reconnects >= 1, "{ws:?}");
    assert_eq!((ws.dead_lettered, ws.in_doubt), (0, 0), "{ws:?}");
    assert!(
        rx.recv_timeout(Duration::from_millis(200)).is_err(),
        "a duplicate arrived"
    );
}

#[test]
fn a_connection_younger_than_the_grace_period_is_not_evicted() {
    let grace = Duration::from_millis(600);
    let (h, rx) = collecting(
        "127.0.0.1:0",
        ListenerConfig::new()
            .with_max_connections(1)
            .with_eviction_grace(grace),
    );
    let addr = h.local_addr();
    let mut young = raw(addr);
    eventually("the first connection", || h.stats().connections_open == 1);
    // Only a connection inside its grace period could make room: the newcomer is refused.
    let mut early = raw(addr);
    wait_closed(&mut early);
    let st = h.stats();
    assert_eq!((st.evictions, st.connections_refused), (0, 1), "{st:?}");
    send(&mut young, &frame(b"still served"));
    assert_eq!(recv(&rx), b"still served");
    // Past the grace period it is fair game, even though it has completed a message.
    thread::sleep(grace);
    let mut late = raw(addr);
    wait_closed(&mut young);
    send(&mut late, &frame(b"late"));
    assert_eq!(recv(&rx), b"late");
    assert_eq!(h.stats().evictions, 1);
}

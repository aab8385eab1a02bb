//! TLS (feature `tls`) over 127.0.0.1, with certificates the tests make: mutual TLS with
//! replies, the acknowledged mode and a restart; every bad certificate and non-TLS peer
//! closing only its own connection, typed on the writer's side and never retried; and the
//! hostile handshakes (half-open by the thousand, trickled, cut at every byte, garbage) and
//! a flood of key updates after one.
#![cfg(feature = "tls")]

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::Duration;

use buffstreams_test_support::pki::{Ca, Identity, Leaf, name};
use buffstreams_transport_std::rustls::{self, ClientConnection};
use buffstreams_transport_std::{
    BigEndian, Delivery, Error, Listener, ListenerConfig, ListenerHandle, RetryPolicy, TlsReason,
    Writer, WriterConfig,
};
use common::{LONG, eventually, raw, wait_closed};

/// A CA, the listener's certificate and a device's, all from that CA.
struct Pki {
    ca: Ca,
    server: Identity,
    device: Identity,
}

fn pki() -> Pki {
    let ca = Ca::new("buffstreams test CA");
    let server = ca.leaf("listener", &["localhost", "127.0.0.1"], Leaf::Server);
    let device = ca.leaf("device-7", &[], Leaf::Client);
    Pki { ca, server, device }
}

type Peers = Arc<Mutex<Vec<Vec<u8>>>>;

/// The log lines of this test binary (a logger is process-wide).
static LINES: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        LINES.lock().unwrap().push(record.args().to_string());
    }
    fn flush(&self) {}
}

/// Whether a log line mentions every one of `words`.
fn logged(words: &[&str]) -> bool {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        let _ = log::set_logger(&Capture);
        log::set_max_level(log::LevelFilter::Info);
    });
    LINES
        .lock()
        .unwrap()
        .iter()
        .any(|l| words.iter().all(|w| l.contains(w)))
}

/// A mutual-TLS listener that echoes every message reversed and records, per message, the
/// certificate its peer presented.
fn echo(config: ListenerConfig) -> (ListenerHandle, mpsc::Receiver<Vec<u8>>, Peers) {
    let (tx, rx) = mpsc::channel();
    let peers: Peers = Arc::default();
    let p = peers.clone();
    let h = Listener::<BigEndian<4>>::bind("127.0.0.1:0", config)
        .unwrap()
        .spawn_with_reply(move |m, conn| {
            let cert = conn
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| c.to_vec())
                .unwrap_or_default();
            p.lock().unwrap().push(cert);
            let mut back = m.to_vec();
            back.reverse();
            conn.reply(&back)?;
            tx.send(m.to_vec())?;
            Ok(())
        })
        .unwrap();
    (h, rx, peers)
}

fn mtls_listener(p: &Pki) -> ListenerConfig {
    ListenerConfig::new()
        .with_max_frame_len(1 << 16)
        .with_tls(Ca::server(&p.server, Some(&p.ca)))
}

fn client(p: &Pki, id: Option<&Identity>) -> WriterConfig {
    WriterConfig::new()
        .with_max_frame_len(1 << 16)
        .with_tls(p.ca.client(id), name("localhost"))
        .with_retry(
            RetryPolicy::new()
                .with_max_attempts(Some(20))
                .with_initial_backoff(Duration::from_millis(10))
                .with_deadline(Some(LONG)),
        )
}

fn message(i: usize) -> Vec<u8> {
    let len = (i * 7919) % 5000;
    (0..len).map(|k| (i + k) as u8).collect()
}

/// A device with a good certificate is served: one message and its reply.
fn served(addr: SocketAddr, p: &Pki, rx: &mpsc::Receiver<Vec<u8>>) {
    let (tx, replies) = mpsc::channel();
    let w: Writer = Writer::dial(
        addr,
        client(p, Some(&p.device)).with_on_reply(move |r| {
            let _ = tx.send(r.to_vec());
        }),
    )
    .expect("a good device is served");
    w.write(b"still serving").unwrap();
    assert_eq!(rx.recv_timeout(LONG).unwrap(), b"still serving");
    assert_eq!(replies.recv_timeout(LONG).unwrap(), b"gnivres llits");
    w.close();
}

#[test]
fn mutual_tls_carries_messages_and_replies_and_names_the_device() {
    const N: usize = 20_000;
    let p = pki();
    let (server, rx, peers) = echo(mtls_listener(&p));
    let (tx, replies) = mpsc::channel();
    let w: Writer = Writer::dial(
        server.local_addr(),
        client(&p, Some(&p.device)).with_on_reply(move |r| {
            let _ = tx.send(r.to_vec());
        }),
    )
    .unwrap();
    let sender = thread::spawn(move || {
        for i in 0..N {
            w.write(&message(i)).unwrap();
        }
        w
    });
    for i in 0..N {
        let m = rx.recv_timeout(LONG).expect("message delivered");
        assert_eq!(m, message(i), "message {i}");
    }
    for i in 0..N {
        let mut expected = message(i);
        expected.reverse();
        assert_eq!(replies.recv_timeout(LONG).unwrap(), expected, "reply {i}");
    }
    let stats = sender.join().unwrap().close();
    assert_eq!((stats.tls_errors, stats.dead_lettered), (0, 0));
    let peers = peers.lock().unwrap();
    assert_eq!(peers.len(), N);
    assert!(peers.iter().all(|c| *c == p.device.chain[0].to_vec()));
    let s = server.stats();
    assert_eq!(
        (s.tls_errors, s.protocol_errors, s.messages_in),
        (0, 0, N as u64)
    );
}

#[test]
fn the_acknowledged_mode_over_tls_survives_a_listener_restart() {
    const N: u64 = 30_000;
    let p = pki();
    let seen: Arc<Mutex<Vec<(u64, Delivery)>>> = Arc::default();
    let start = |addr: &str| {
        let s = seen.clone();
        Listener::<BigEndian<4>>::bind(addr, mtls_listener(&p).with_acks(true))
            .unwrap()
            .spawn_with_reply(move |m, conn| {
                let i = u64::from_be_bytes(m[..8].try_into().unwrap());
                s.lock().unwrap().push((i, conn.delivery().unwrap()));
                Ok(())
            })
            .unwrap()
    };
    let first = start("127.0.0.1:0");
    let addr = first.local_addr();
    let w: Writer = Writer::dial(
        addr,
        client(&p, Some(&p.device))
            .with_acks(true)
            .with_reply_wait(LONG),
    )
    .unwrap();
    let mut m = vec![7u8; 110];
    for i in 0..N / 2 {
        m[..8].copy_from_slice(&i.to_be_bytes());
        w.write(&m).unwrap();
    }
    first.shutdown();
    let second = start(&addr.to_string());
    for i in N / 2..N {
        m[..8].copy_from_slice(&i.to_be_bytes());
        w.write(&m).unwrap();
    }
    let stats = w.close();
    assert_eq!((stats.acked, stats.dead_lettered), (N, 0));
    // Every message, in order; a repeat only where the restart left doubt, and marked.
    let seen = seen.lock().unwrap();
    let mut next = 0u64;
    for (i, d) in seen.iter() {
        if *i < next {
            assert!(d.may_repeat, "message {i} again without may_repeat");
        } else {
            assert_eq!(*i, next, "a gap before {i}");
            next += 1;
        }
    }
    assert_eq!(next, N);
    assert_eq!(second.stats().tls_errors, 0);
}

#[test]
fn a_plaintext_peer_and_garbage_at_a_tls_listener_are_closed_and_counted() {
    let p = pki();
    let _ = logged(&[]);
    let (server, rx, _) = echo(mtls_listener(&p));
    let addr = server.local_addr();
    let garbage: [&[u8]; 4] = [
        &common::frame(b"hello, I speak no TLS"),
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        &[0x16, 0x03, 0x01, 0xff, 0xff, 1, 2, 3, 4, 5, 6, 7, 8],
        &[0x16, 0x03, 0x01, 0x00, 0x05, 0x01, 0x00, 0x00, 0x01, 0x00],
    ];
    for (k, g) in garbage.iter().enumerate() {
        let mut s = raw(addr);
        let peer = s.local_addr().unwrap().to_string();
        s.write_all(g).unwrap();
        wait_closed(&mut s);
        eventually("the failure counted", || {
            server.stats().tls_errors == k as u64 + 1
        });
        // Logged with the peer and the reason.
        eventually("the failure logged", || logged(&[&peer, "TLS: "]));
    }
    assert!(logged(&["TLS: the peer does not speak TLS"]));
    // A plaintext buffstreams writer: its connection is closed, nothing reaches the callback.
    let plain: Writer = Writer::dial(addr, WriterConfig::new()).unwrap();
    plain.write(b"not sealed").unwrap();
    plain.flush();
    eventually("the plain writer refused", || {
        server.stats().tls_errors == 5
    });
    served(addr, &p, &rx);
    assert_eq!(server.stats().messages_in, 1);
}

#[test]
fn a_tls_writer_at_a_plain_listener_gets_a_typed_error() {
    let (server, rx) = common::collecting("127.0.0.1:0", ListenerConfig::new());
    let p = pki();
    let config = client(&p, None).with_retry(RetryPolicy::new().with_max_attempts(Some(3)));
    let dialled = Writer::<BigEndian<4>>::dial(server.local_addr(), config);
    match dialled {
        Err(Error::Tls(e)) => assert_eq!(e.reason(), TlsReason::Closed, "{e}"),
        other => panic!("expected Error::Tls, got {other:?}"),
    }
    // Three attempts (the retry policy), each a protocol error at the listener; nothing
    // reached its callback.
    eventually("three refusals", || server.stats().protocol_errors == 3);
    assert!(rx.try_recv().is_err());
}

#[test]
fn a_listener_certificate_that_does_not_verify_is_refused_at_once() {
    let p = pki();
    let other = Ca::new("someone else's CA");
    let cases = [
        (
            "another CA's",
            other.leaf("listener", &["localhost"], Leaf::Server),
        ),
        (
            "an expired",
            p.ca.leaf("listener", &["localhost"], Leaf::Expired),
        ),
        (
            "another name's",
            p.ca.leaf("listener", &["elsewhere.example"], Leaf::Server),
        ),
    ];
    for (what, cert) in cases {
        let config = ListenerConfig::new().with_tls(Ca::server(&cert, Some(&p.ca)));
        let (server, _rx, _) = echo(config);
        let dialled =
            Writer::<BigEndian<4>>::dial(server.local_addr(), client(&p, Some(&p.device)));
        match dialled {
            Err(Error::Tls(e)) => {
                assert_eq!(e.reason(), TlsReason::PeerCertificate, "{what}: {e}");
                assert!(e.reason().is_permanent());
            }
            other => panic!("{what} certificate: expected Error::Tls, got {other:?}"),
        }
        // Never retried: one connection, whose failure the listener heard of (our alert).
        eventually("the alert counted", || server.stats().tls_errors == 1);
        assert_eq!(server.stats().connections_total, 1, "{what}: retried");
    }
}

#[test]
fn device_certificates_that_must_be_refused_close_only_their_connection() {
    let p = pki();
    let (server, rx, _) = echo(mtls_listener(&p));
    let addr = server.local_addr();
    let other = Ca::new("someone else's CA");
    let stranger = other.leaf("device-9", &[], Leaf::Client);
    let expired = p.ca.leaf("device-8", &[], Leaf::Expired);
    let cases: [(&str, Option<&Identity>); 3] = [
        ("no", None),
        ("another CA's", Some(&stranger)),
        ("an expired", Some(&expired)),
    ];
    for (k, (what, id)) in cases.into_iter().enumerate() {
        let before = server.stats().connections_total;
        match Writer::<BigEndian<4>>::dial(addr, client(&p, id)) {
            Err(Error::Tls(e)) => {
                assert_eq!(
                    e.reason(),
                    TlsReason::RefusedByPeer,
                    "{what} certificate: {e}"
                );
            }
            other => panic!("{what} certificate: expected Error::Tls, got {other:?}"),
        }
        eventually("the refusal counted", || {
            server.stats().tls_errors == k as u64 + 1
        });
        assert_eq!(
            server.stats().connections_total,
            before + 1,
            "{what}: retried"
        );
    }
    served(addr, &p, &rx);
    assert_eq!(server.stats().messages_in, 1);
}

#[test]
fn a_writer_refused_after_a_restart_stops_and_says_why() {
    let p = pki();
    let (first, rx, _) = echo(mtls_listener(&p));
    let addr = first.local_addr();
    let w: Writer = Writer::dial(addr, client(&p, Some(&p.device))).unwrap();
    w.write(b"before").unwrap();
    assert_eq!(rx.recv_timeout(LONG).unwrap(), b"before");
    first.shutdown();
    // The listener comes back with a certificate from a CA the writer does not trust.
    let other = Ca::new("a CA rotated in by mistake");
    let wrong = other.leaf("listener", &["localhost"], Leaf::Server);
    let second = Listener::<BigEndian<4>>::bind(
        addr,
        ListenerConfig::new().with_tls(Ca::server(&wrong, Some(&p.ca))),
    )
    .unwrap()
    .spawn(|_: &[u8]| Ok(()))
    .unwrap();
    w.write(b"after").unwrap();
    w.flush();
    eventually("the refusal seen", || w.stats().tls_errors == 1);
    match w.write(b"more") {
        Err(Error::Tls(e)) => assert_eq!(e.reason(), TlsReason::PeerCertificate),
        other => panic!("expected Error::Tls, got {other:?}"),
    }
    assert_eq!(w.take_dead_letters(), vec![b"after".to_vec()]);
    // No retry loop: one handshake against the wrong certificate.
    thread::sleep(Duration::from_millis(100));
    assert_eq!(second.stats().connections_total, 1);
}

/// The first flight of a TLS client: a real ClientHello.
fn client_hello(p: &Pki) -> Vec<u8> {
    let mut c = ClientConnection::new(p.ca.client(Some(&p.device)), name("localhost")).unwrap();
    let mut hello = Vec::new();
    c.write_tls(&mut hello).unwrap();
    assert!(hello.len() > 100);
    hello
}

#[test]
fn a_client_hello_cut_at_every_byte_delivers_nothing_and_harms_no_one() {
    let p = pki();
    let (server, rx, _) = echo(mtls_listener(&p));
    let addr = server.local_addr();
    let hello = client_hello(&p);
    for cut in 0..hello.len() {
        let mut s = raw(addr);
        s.write_all(&hello[..cut]).unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        wait_closed(&mut s);
    }
    eventually("all closed", || server.stats().connections_open == 0);
    assert_eq!(server.stats().messages_in, 0);
    served(addr, &p, &rx);
}

#[test]
fn a_trickled_or_silent_handshake_is_closed_at_the_frame_deadline() {
    let p = pki();
    let config = mtls_listener(&p).with_frame_timeout(Some(Duration::from_millis(300)));
    let (server, rx, _) = echo(config);
    let addr = server.local_addr();
    // Silent: a TLS client speaks first, so the deadline runs from the accept.
    let mut silent = raw(addr);
    wait_closed(&mut silent);
    assert_eq!(server.stats().frame_timeouts, 1);
    // Trickled: a byte every 50 ms never completes the hello within 300 ms; a device is
    // served meanwhile.
    let hello = client_hello(&p);
    let mut s = raw(addr);
    let mut sent = 0;
    for b in &hello {
        if s.write_all(std::slice::from_ref(b)).is_err() {
            break;
        }
        sent += 1;
        if sent == 2 {
            served(addr, &p, &rx);
        }
        thread::sleep(Duration::from_millis(50));
        if server.stats().frame_timeouts == 2 {
            break;
        }
    }
    eventually("the trickler closed", || server.stats().frame_timeouts == 2);
    assert!(sent < hello.len(), "the whole hello went through");
    served(addr, &p, &rx);
}

#[test]
fn a_thousand_half_open_handshakes_do_not_keep_a_device_out() {
    let p = pki();
    // The defaults, but for TLS: 1,024 connections, a 10 s frame deadline.
    let (server, rx, _) = echo(mtls_listener(&p));
    let addr = server.local_addr();
    let hello = client_hello(&p);
    let half: Vec<TcpStream> = (0..1000)
        .map(|_| {
            let mut s = raw(addr);
            s.write_all(&hello[..hello.len() / 2]).unwrap();
            s
        })
        .collect();
    eventually("all accepted", || server.stats().connections_total >= 1000);
    served(addr, &p, &rx);
    drop(half);
    // And with room for 64 only, eviction makes room for the device.
    let (small, rx, _) = echo(mtls_listener(&p).with_max_connections(64));
    let half: Vec<TcpStream> = (0..200)
        .map(|_| {
            let mut s = raw(small.local_addr());
            let _ = s.write_all(&hello[..hello.len() / 2]);
            s
        })
        .collect();
    eventually("the slots taken", || {
        let s = small.stats();
        s.connections_total + s.connections_refused >= 200
    });
    served(small.local_addr(), &p, &rx);
    assert!(small.stats().evictions > 0);
    drop(half);
    let mut buf = [0u8; 1];
    let _ = raw(small.local_addr()).read(&mut buf);
}

#[test]
fn a_flood_of_key_updates_closes_only_that_connection() {
    let p = pki();
    let (server, rx, _) = echo(mtls_listener(&p));
    let addr = server.local_addr();
    let mut tcp = raw(addr);
    let mut c = ClientConnection::new(p.ca.client(Some(&p.device)), name("localhost")).unwrap();
    while c.is_handshaking() {
        c.complete_io(&mut tcp).unwrap();
    }
    // TLS 1.3 has no renegotiation; what a client can repeat after the handshake without
    // sending data is a key update (each asking for the listener's). rustls bounds them.
    let mut sent = 0;
    for _ in 0..10_000 {
        if c.refresh_traffic_keys().is_err() || c.write_tls(&mut tcp).is_err() {
            break;
        }
        sent += 1;
    }
    assert!(sent > 0);
    wait_closed(&mut tcp);
    eventually("the flood counted", || server.stats().tls_errors == 1);
    assert_eq!(server.stats().messages_in, 0);
    served(addr, &p, &rx);
}

#[test]
fn the_manager_dials_and_listens_over_tls() {
    use buffstreams_transport_std::Manager;
    let p = pki();
    let m: Manager = Manager::new();
    let (tx, rx) = mpsc::channel();
    let addr = m
        .start_listening("127.0.0.1:0", mtls_listener(&p), move |msg: &[u8]| {
            tx.send(msg.to_vec())?;
            Ok(())
        })
        .unwrap();
    m.dial(addr, client(&p, Some(&p.device))).unwrap();
    m.write(addr, b"through the manager").unwrap();
    assert_eq!(rx.recv_timeout(LONG).unwrap(), b"through the manager");
    // And refused the same way, typed.
    let other = Ca::new("someone else's CA");
    let stranger = other.leaf("device-9", &[], Leaf::Client);
    m.close_writer(addr).unwrap();
    match m.dial(addr, client(&p, Some(&stranger))) {
        Err(Error::Tls(e)) => assert_eq!(e.reason(), TlsReason::RefusedByPeer, "{e}"),
        other => panic!("expected Error::Tls, got {other:?}"),
    }
    assert!(
        matches!(m.writer(addr), Err(Error::NotOpen(_))),
        "a refused writer is not kept"
    );
}

#[test]
fn a_tls12_only_device_is_served_too() {
    // Not restricted to TLS 1.3: a device that can only do 1.2 (many older stacks) is served,
    // its certificate checked the same way.
    let p = pki();
    let (server, rx, peers) = echo(mtls_listener(&p));
    let config = rustls::ClientConfig::builder_with_protocol_versions(&[&rustls::version::TLS12])
        .with_root_certificates({
            let mut roots = rustls::RootCertStore::empty();
            roots.add(p.ca.cert.clone()).unwrap();
            roots
        })
        .with_client_auth_cert(p.device.chain.clone(), p.device.key())
        .unwrap();
    let w: Writer = Writer::dial(
        server.local_addr(),
        WriterConfig::new().with_tls(Arc::new(config), name("localhost")),
    )
    .unwrap();
    w.write(b"over TLS 1.2").unwrap();
    assert_eq!(rx.recv_timeout(LONG).unwrap(), b"over TLS 1.2");
    w.close();
    assert_eq!(peers.lock().unwrap()[0], p.device.chain[0].to_vec());
}

#[test]
fn close_notify_inside_a_frame_drops_the_partial_frame_and_counts_it() {
    let p = pki();
    let (server, rx, _) = echo(mtls_listener(&p));
    let tcp = raw(server.local_addr());
    let c = ClientConnection::new(p.ca.client(Some(&p.device)), name("localhost")).unwrap();
    let mut s = rustls::StreamOwned::new(c, tcp);
    // One whole message, then a header declaring 10 bytes and 3 of them, then close_notify.
    s.write_all(&common::frame(b"whole")).unwrap();
    s.write_all(&[0, 0, 0, 10, 1, 2, 3]).unwrap();
    s.conn.send_close_notify();
    s.flush().unwrap();
    assert_eq!(rx.recv_timeout(LONG).unwrap(), b"whole");
    eventually("the cut frame counted", || server.stats().truncated == 1);
    let stats = server.stats();
    assert_eq!((stats.messages_in, stats.tls_errors), (1, 0));
}

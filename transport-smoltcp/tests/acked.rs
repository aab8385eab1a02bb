//! The acknowledged mode on `phy::Loopback` with a simulated clock: an acknowledged writer
//! into an acknowledged listener, with the listener's connections aborted, its state thrown
//! away and rebuilt mid-stream, a full window, plain peers on either side, and a writer that
//! gives up.

mod common;

use std::collections::HashMap;

use buffstreams_framing::BigEndian;
use buffstreams_framing::acked::{Delivery, SessionId, SessionSlot, Window};
use buffstreams_transport_smoltcp::{
    Listener, ListenerConfig, RetryPolicy, SendError, Slot, Status, Writer, WriterConfig,
};
use common::{Net, PORT, server};
use smoltcp::time::Duration;

type Acked = Listener<BigEndian<4>, Vec<u8>, Vec<u8>, 2, Vec<SessionSlot>>;
type AckedWriter = Writer<BigEndian<4>, Vec<u8>, Vec<u8>>;

fn listener(net: &mut Net, handles: Option<[smoltcp::iface::SocketHandle; 2]>) -> Acked {
    let handles = handles.unwrap_or_else(|| [net.tcp(4096, 4096), net.tcp(4096, 4096)]);
    let slots = handles.map(|h| Slot::new(h, vec![0u8; 2048], vec![0u8; 256]));
    Listener::new(ListenerConfig::new(PORT), slots).with_acks(vec![SessionSlot::EMPTY; 4])
}

fn writer(net: &mut Net, window: usize, session: u8) -> AckedWriter {
    let h = net.tcp(4096, 4096);
    let retry = RetryPolicy::new().with_initial_backoff(Duration::from_millis(5));
    Writer::<BigEndian<4>, _>::new(
        h,
        server(),
        WriterConfig::new().with_retry(retry),
        vec![0u8; 256],
    )
    .with_acks(
        Window::new(Vec::new(), window, 1 << 20),
        SessionId([session; 16]),
    )
}

fn message(i: u64) -> Vec<u8> {
    let mut m = i.to_be_bytes().to_vec();
    m.resize(8 + (i % 50) as usize, 0x5a);
    m
}

fn index(m: &[u8]) -> u64 {
    u64::from_be_bytes(m[..8].try_into().unwrap())
}

/// Every delivery, as the listener's handler saw it.
#[derive(Default)]
struct Seen(Vec<(u64, Delivery)>);

impl Seen {
    /// Each message delivered in order, numbered as written; a repeat only where marked.
    fn check(&self, n: u64) -> (u64, u64) {
        let mut first: HashMap<u64, usize> = HashMap::new();
        let mut repeats = 0;
        for (k, &(i, d)) in self.0.iter().enumerate() {
            assert_eq!(d.seq, i + 1, "message {i} numbered {}", d.seq);
            if first.insert(i, k).is_some() {
                assert!(
                    d.may_repeat,
                    "message {i} delivered again without may_repeat"
                );
                repeats += 1;
            }
        }
        assert_eq!(first.len() as u64, n, "messages missing");
        (self.0.len() as u64, repeats)
    }
}

/// Polls writer and listener until `n` messages are written and acknowledged; `each` runs
/// after every step (with the step number) to break things.
fn stream(
    net: &mut Net,
    w: &mut AckedWriter,
    l: &mut Acked,
    seen: &mut Seen,
    n: u64,
    mut each: impl FnMut(&mut Net, &mut Acked, u64, usize),
) {
    let mut sent = 0u64;
    for step in 0..400_000 {
        net.poll();
        w.poll(net.iface.context(), &mut net.sockets, net.now);
        l.poll(&mut net.sockets, net.now, |msg, conn| {
            seen.0.push((index(msg), conn.delivery().unwrap()));
        });
        while sent < n {
            match w.write(&mut net.sockets, &message(sent)) {
                Ok(_) => sent += 1,
                Err(SendError::WindowFull) => break,
                Err(e) => panic!("write {sent}: {e}"),
            }
        }
        each(net, l, seen.0.len() as u64, step);
        if sent == n && w.is_settled() {
            return;
        }
    }
    panic!(
        "not settled: {sent} written, {} unacknowledged, {} delivered",
        w.unacknowledged(),
        seen.0.len()
    );
}

/// The window makes an acknowledged writer wait for the listener between bursts. With
/// Nagle's algorithm on (smoltcp's default), a burst smaller than a segment waited for the
/// listener's TCP ACK, which smoltcp delays 10 ms by default: on the loopback bench a 64 KiB
/// window (the socket's buffer) ran at 0.11 M msgs/s against 35 M with Nagle off. Simulated
/// time does not show the stall (a step is a whole millisecond), so this checks the cause: the
/// writer turns Nagle off on its socket when it connects, whatever the socket was made with.
#[test]
fn the_acknowledged_writer_sends_without_waiting_for_nagle() {
    let mut net = Net::new();
    let mut l = listener(&mut net, None);
    let h = net.tcp(4096, 4096);
    assert!(net.socket(h).nagle_enabled(), "smoltcp's default");
    let mut w = Writer::<BigEndian<4>, _>::new(h, server(), WriterConfig::new(), vec![0u8; 256])
        .with_acks(Window::new(Vec::new(), 2048, 1 << 20), SessionId([3; 16]));
    let mut seen = Seen::default();
    stream(&mut net, &mut w, &mut l, &mut seen, 100, |_, _, _, _| {});
    assert_eq!(seen.check(100), (100, 0));
    assert!(!net.socket(h).nagle_enabled());
}

#[test]
fn every_message_is_delivered_once_in_order_and_acknowledged() {
    let mut net = Net::new();
    let mut l = listener(&mut net, None);
    let mut w = writer(&mut net, 16 * 1024, 1);
    let mut seen = Seen::default();
    stream(&mut net, &mut w, &mut l, &mut seen, 5_000, |_, _, _, _| {});
    assert_eq!(seen.check(5_000), (5_000, 0));
    assert!(seen.0.iter().all(|(_, d)| !d.may_repeat));
    let (ws, ls) = (w.stats(), l.stats());
    assert_eq!(
        (ws.acked, ws.resent, ws.reconnects),
        (5_000, 0, 0),
        "{ws:?}"
    );
    assert!(ls.acks_out > 0 && ls.acks_out < 5_000, "{ls:?}");
    assert_eq!(w.status(), Status::Connected);
}

#[test]
fn connections_aborted_mid_stream_lose_and_repeat_nothing() {
    let mut net = Net::new();
    let mut l = listener(&mut net, None);
    let mut w = writer(&mut net, 16 * 1024, 2);
    let mut seen = Seen::default();
    let mut cuts = [1_000u64, 2_500, 4_000].into_iter().peekable();
    stream(
        &mut net,
        &mut w,
        &mut l,
        &mut seen,
        6_000,
        |net, l, delivered, _| {
            if cuts.peek().is_some_and(|&at| delivered >= at) {
                cuts.next();
                l.close(&mut net.sockets); // RST on every connection; the sessions stay known
            }
        },
    );
    // The listener remembered the session: each welcome said where to resume.
    assert_eq!(seen.check(6_000), (6_000, 0));
    let ws = w.stats();
    assert!(ws.reconnects >= 3, "{ws:?}");
}

#[test]
fn a_listener_whose_state_is_lost_mid_stream_repeats_only_what_it_marks() {
    let mut net = Net::new();
    let handles = [net.tcp(4096, 4096), net.tcp(4096, 4096)];
    let mut l = listener(&mut net, Some(handles));
    let mut w = writer(&mut net, 32 * 1024, 3);
    let mut seen = Seen::default();
    let mut restarted = false;
    stream(
        &mut net,
        &mut w,
        &mut l,
        &mut seen,
        8_000,
        |net, l, delivered, _| {
            if !restarted && delivered >= 3_000 {
                restarted = true;
                // The listener's process "restarts": its sockets are aborted and every bit of its
                // state (sessions included) is rebuilt from nothing over the same sockets.
                l.close(&mut net.sockets);
                *l = listener(net, Some(handles));
            }
        },
    );
    let (deliveries, repeats) = seen.check(8_000);
    assert!(restarted);
    let ws = w.stats();
    assert!(ws.resent > 0 && ws.reconnects >= 1, "{ws:?}");
    // The restarted listener got again what the first one had not acknowledged, marked.
    assert_eq!(deliveries - repeats, 8_000);
    eprintln!("{repeats} repeats, every one marked; writer {ws:?}");
}

#[test]
fn a_full_window_refuses_then_takes_messages_once_acknowledged() {
    let mut net = Net::new();
    let mut l = listener(&mut net, None);
    // Room for about ten messages: writes are refused, whole, once it is full.
    let room = 10 * (8 + 4 + 58);
    let mut w = writer(&mut net, room, 4);
    let mut frames = 0;
    let mut i = 0;
    loop {
        match w.write(&mut net.sockets, &message(i)) {
            Ok(n) => frames += n,
            Err(SendError::WindowFull) => break,
            Err(e) => panic!("{e}"),
        }
        i += 1;
    }
    // Every frame is in the window, with at least one 8-byte record, and the refused one
    // would not have fitted beside them.
    assert!(
        i > 5 && frames + 8 <= room,
        "{i} messages, {frames} B of {room}"
    );
    assert!(
        frames + message(i).len() + 4 > room - 8 * i as usize,
        "{i}: {frames}"
    );
    assert_eq!(w.unacknowledged(), i);
    let queued = w.unacknowledged();
    let mut seen = Seen::default();
    for _ in 0..20_000 {
        net.poll();
        w.poll(net.iface.context(), &mut net.sockets, net.now);
        l.poll(&mut net.sockets, net.now, |msg, conn| {
            seen.0.push((index(msg), conn.delivery().unwrap()));
        });
        if w.is_settled() {
            break;
        }
    }
    assert!(w.is_settled());
    assert_eq!(seen.0.len() as u64, queued);
    assert!(w.write(&mut net.sockets, &message(queued)).is_ok());
}

#[test]
fn plain_peers_are_refused_on_either_side() {
    // A plain writer at an acknowledged listener: refused at its first byte.
    let mut net = Net::new();
    let mut l = listener(&mut net, None);
    let h = net.tcp(4096, 4096);
    let mut plain = Writer::<BigEndian<4>, _>::new(h, server(), WriterConfig::new(), [0u8; 0]);
    let mut delivered = 0;
    for _ in 0..2_000 {
        net.poll();
        plain.poll(net.iface.context(), &mut net.sockets, net.now);
        let _ = plain.write(&mut net.sockets, b"plain");
        l.poll(&mut net.sockets, net.now, |_, _| delivered += 1);
    }
    assert_eq!(delivered, 0);
    assert!(l.stats().handshake_errors > 0, "{:?}", l.stats());

    // An acknowledged writer at a plain listener: never welcomed, gives up after its attempts.
    let mut net = Net::new();
    let slots = [net.tcp(4096, 4096)].map(|h| Slot::new(h, vec![0u8; 2048], vec![0u8; 256]));
    let mut plain = Listener::<BigEndian<4>, _, _, 1>::new(ListenerConfig::new(PORT), slots);
    let h = net.tcp(4096, 4096);
    let retry = RetryPolicy::new()
        .with_initial_backoff(Duration::from_millis(5))
        .with_max_attempts(Some(3));
    let mut w = Writer::<BigEndian<4>, _>::new(
        h,
        server(),
        WriterConfig::new().with_retry(retry),
        [0u8; 64],
    )
    .with_acks(Window::new([0u8; 1024], usize::MAX, 64), SessionId([5; 16]));
    w.write(&mut net.sockets, b"kept").unwrap();
    let mut status = w.status();
    for _ in 0..20_000 {
        net.poll();
        status = w.poll(net.iface.context(), &mut net.sockets, net.now);
        plain.poll(&mut net.sockets, net.now, |_, _| {});
        if status == Status::GaveUp {
            break;
        }
    }
    assert_eq!(status, Status::GaveUp);
    assert_eq!(w.unacknowledged(), 1, "the message stays in the window");
    assert!(plain.stats().protocol_errors > 0);
}

#[test]
fn giving_up_hands_back_what_was_not_acknowledged_and_starts_a_new_session() {
    let mut net = Net::new();
    let mut w = writer(&mut net, 4096, 6);
    for i in 0..5 {
        w.write(&mut net.sockets, &message(i)).unwrap();
    }
    let mut dead = Vec::new();
    assert_eq!(
        w.give_up(&mut net.sockets, SessionId([7; 16]), |m| dead
            .push(index(m))),
        5
    );
    assert_eq!(dead, [0, 1, 2, 3, 4]);
    assert!(w.is_settled());
    assert_eq!(w.stats().dead_lettered, 5);
    // The new session numbers from 1 again, and a listener takes it whole.
    let mut l = listener(&mut net, None);
    let mut seen = Vec::new();
    for i in 0..10 {
        w.write(&mut net.sockets, &message(i)).unwrap();
    }
    for _ in 0..20_000 {
        net.poll();
        w.poll(net.iface.context(), &mut net.sockets, net.now);
        l.poll(&mut net.sockets, net.now, |msg, conn| {
            seen.push((index(msg), conn.delivery().unwrap()));
        });
        if w.is_settled() {
            break;
        }
    }
    assert_eq!(seen.len(), 10);
    for (k, (i, d)) in seen.iter().enumerate() {
        assert_eq!(
            (*i, d.seq, d.session),
            (k as u64, k as u64 + 1, SessionId([7; 16]))
        );
    }
}

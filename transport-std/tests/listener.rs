//! Listener behaviour over 127.0.0.1, including hostile peers.

mod common;

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use buffstreams_framing::{BigEndian, Config, Decoder, FrameReader};
use buffstreams_transport_std::{
    BuffStreams, Error, Listener, ListenerConfig, ListenerHandle, Manager, OverLimit, Oversize,
};
use common::*;
use embedded_io_adapters::std::FromStd;

/// A listener that sends every message it gets on a channel.
fn collecting(config: ListenerConfig) -> (ListenerHandle, mpsc::Receiver<Vec<u8>>) {
    let (tx, rx) = mpsc::channel();
    let l = Listener::<BigEndian<4>>::bind("127.0.0.1:0", config).unwrap();
    let h = l
        .spawn(move |m: &[u8]| {
            if m == b"panic" {
                panic!("callback asked to panic");
            }
            if m == b"err" {
                return Err("callback refused".into());
            }
            tx.send(m.to_vec())?;
            Ok(())
        })
        .expect("spawn the listener");
    (h, rx)
}

#[test]
fn delivers_every_message_in_order() {
    let (h, rx) = collecting(ListenerConfig::new());
    let mut s = raw(h.local_addr());
    let mut wire = Vec::new();
    for i in 0..2000u32 {
        wire.extend_from_slice(&frame(&i.to_le_bytes().repeat((i % 50) as usize)));
    }
    send(&mut s, &wire);
    for i in 0..2000u32 {
        assert_eq!(recv(&rx), i.to_le_bytes().repeat((i % 50) as usize));
    }
    let st = h.stats();
    assert_eq!(st.messages_in, 2000);
    assert_eq!(st.connections_total, 1);
}

#[test]
fn request_response_with_peer_addr() {
    let l = Listener::<BigEndian<4>>::bind("127.0.0.1:0", ListenerConfig::new()).unwrap();
    let h = l
        .spawn_with_reply(|m, conn| {
            let mut out = format!("{}:", conn.peer_addr().ip()).into_bytes();
            out.extend_from_slice(m);
            conn.reply(&out)?;
            Ok(())
        })
        .expect("spawn the listener");
    let s = raw(h.local_addr());
    let mut w = s.try_clone().unwrap();
    let mut r = FrameReader::new(
        FromStd::new(s),
        Decoder::<BigEndian<4>, _>::new(Config::new(), vec![]),
        vec![0u8; 4096],
    );
    // Request/response without any flush by the caller: the reply must come back on its own.
    for i in 0..200 {
        send(&mut w, &frame(format!("ping {i}").as_bytes()));
        assert_eq!(
            r.read_frame().unwrap().unwrap(),
            format!("127.0.0.1:ping {i}").as_bytes()
        );
    }
    assert_eq!(h.stats().messages_out, 200);
}

#[test]
fn oversize_reject_closes_only_that_connection() {
    let (h, rx) = collecting(ListenerConfig::new().with_max_frame_len(1024));
    let mut good = raw(h.local_addr());
    let mut bad = raw(h.local_addr());
    send(&mut good, &frame(b"before"));
    assert_eq!(recv(&rx), b"before");
    // 4 GiB declared: refused from the header alone.
    send(&mut bad, &[0xff, 0xff, 0xff, 0xff, 1, 2, 3]);
    wait_closed(&mut bad);
    send(&mut good, &frame(b"after"));
    assert_eq!(recv(&rx), b"after");
    assert_eq!(h.stats().protocol_errors, 1);
    assert_eq!(h.stats().connections_open, 1);
}

#[test]
fn oversize_skip_keeps_the_connection_in_sync() {
    let (h, rx) = collecting(
        ListenerConfig::new()
            .with_max_frame_len(16)
            .with_oversize(Oversize::Skip),
    );
    let mut s = raw(h.local_addr());
    let mut wire = frame(b"one");
    wire.extend_from_slice(&frame(&[7u8; 5000]));
    wire.extend_from_slice(&frame(b"two"));
    send(&mut s, &wire);
    assert_eq!(recv(&rx), b"one");
    assert_eq!(recv(&rx), b"two");
    assert_eq!(h.stats().skipped, 1);
    assert_eq!(h.stats().protocol_errors, 0);
}

#[test]
fn buffstreams_negative_length_closes_connection() {
    let (tx, rx) = mpsc::channel();
    let l = Listener::<BuffStreams<3>>::bind(
        "127.0.0.1:0",
        ListenerConfig::new().with_oversize(Oversize::Skip),
    )
    .unwrap();
    let h = l
        .spawn(move |m: &[u8]| Ok(tx.send(m.to_vec())?))
        .expect("spawn the listener");
    let mut good = raw(h.local_addr());
    let mut bad = raw(h.local_addr());
    // Go BuffStreams v2 header for 11 bytes: 16 00 00.
    send(&mut good, b"\x16\x00\x00hello world");
    assert_eq!(rx.recv_timeout(LONG).unwrap(), b"hello world");
    // zigzag(-5) = 9: Go BuffStreams itself crashes with "slice bounds out of range" here.
    send(&mut bad, b"\x09\x00\x00");
    wait_closed(&mut bad);
    send(&mut good, b"\x04\x00\x00ok");
    assert_eq!(rx.recv_timeout(LONG).unwrap(), b"ok");
    assert_eq!(h.stats().protocol_errors, 1);
}

#[test]
fn silent_and_stalled_peers_time_out() {
    let (h, rx) =
        collecting(ListenerConfig::new().with_idle_timeout(Some(Duration::from_millis(200))));
    let mut silent = raw(h.local_addr());
    let mut stalled = raw(h.local_addr());
    send(&mut stalled, &[0, 0]); // half a header
    wait_closed(&mut silent);
    wait_closed(&mut stalled);
    eventually("idle counters", || h.stats().idle_timeouts == 2);
    // The listener goes on serving.
    let mut s = raw(h.local_addr());
    send(&mut s, &frame(b"alive"));
    assert_eq!(recv(&rx), b"alive");
}

#[test]
fn a_streaming_peer_that_stalls_is_still_timed_out() {
    // Reads that fill half the buffer make the connection thread busy-poll before its next
    // blocking read; the poll must give up after its budget, so the idle timeout still
    // closes a peer that streamed and then stalled half-way through a header.
    for busy_poll in [
        Duration::ZERO,
        Duration::from_micros(20),
        Duration::from_millis(5),
    ] {
        let config = ListenerConfig::new()
            .with_read_buffer(1024)
            .with_busy_poll(busy_poll)
            .with_idle_timeout(Some(Duration::from_millis(300)));
        let (h, rx) = collecting(config);
        let mut s = raw(h.local_addr());
        let mut wire = Vec::new();
        for i in 0..5000u32 {
            wire.extend_from_slice(&frame(&i.to_be_bytes().repeat(1 + (i % 40) as usize)));
        }
        wire.extend_from_slice(&[0, 0]);
        send(&mut s, &wire);
        for i in 0..5000u32 {
            assert_eq!(recv(&rx), i.to_be_bytes().repeat(1 + (i % 40) as usize));
        }
        wait_closed(&mut s);
        eventually("the idle timeout", || h.stats().idle_timeouts == 1);
        let st = h.stats();
        assert_eq!((st.messages_in, st.truncated), (5000, 0), "{busy_poll:?}");
        // Polling is on by default on Linux with at least two CPUs; the reads it answers
        // show in the counter (the sender wrote all frames at once, so data was waiting).
        let polls = cfg!(target_os = "linux")
            && !busy_poll.is_zero()
            && thread::available_parallelism().is_ok_and(|n| n.get() > 1);
        assert_eq!(st.polled_reads > 0, polls, "{busy_poll:?}: {st:?}");
        h.shutdown();
    }
}

#[test]
fn connections_over_the_limit_are_refused() {
    let (h, rx) = collecting(
        ListenerConfig::new()
            .with_max_connections(2)
            .with_over_limit(OverLimit::Refuse)
            .with_eviction_grace(Duration::ZERO),
    );
    let mut a = raw(h.local_addr());
    let mut b = raw(h.local_addr());
    send(&mut a, &frame(b"a"));
    send(&mut b, &frame(b"b"));
    let mut got = vec![recv(&rx), recv(&rx)];
    got.sort();
    assert_eq!(got, vec![b"a".to_vec(), b"b".to_vec()]);
    let mut c = raw(h.local_addr());
    wait_closed(&mut c);
    assert_eq!(h.stats().connections_refused, 1);
    drop(a);
    eventually("a slot", || h.stats().connections_open == 1);
    let mut d = raw(h.local_addr());
    send(&mut d, &frame(b"d"));
    assert_eq!(recv(&rx), b"d");
}

#[test]
fn connections_over_the_limit_wait() {
    let (h, rx) = collecting(
        ListenerConfig::new()
            .with_max_connections(1)
            .with_over_limit(OverLimit::Wait),
    );
    let mut a = raw(h.local_addr());
    send(&mut a, &frame(b"a"));
    assert_eq!(recv(&rx), b"a");
    let mut b = raw(h.local_addr()); // sits in the backlog
    send(&mut b, &frame(b"b"));
    assert!(
        rx.recv_timeout(Duration::from_millis(300)).is_err(),
        "b must wait for a slot"
    );
    assert!(h.stats().accept_waits >= 1);
    drop(a);
    assert_eq!(recv(&rx), b"b");
    assert_eq!(h.stats().connections_refused, 0);
}

#[test]
fn disconnect_mid_frame_drops_only_the_partial_frame() {
    let (h, rx) = collecting(ListenerConfig::new());
    let mut s = raw(h.local_addr());
    let mut wire = frame(b"whole");
    wire.extend_from_slice(&frame(b"partial")[..6]);
    send(&mut s, &wire);
    drop(s);
    assert_eq!(recv(&rx), b"whole");
    eventually("truncated counter", || h.stats().truncated == 1);
    assert!(rx.try_recv().is_err());
    let mut s = raw(h.local_addr());
    send(&mut s, &frame(b"next"));
    assert_eq!(recv(&rx), b"next");
}

#[test]
fn callback_panic_closes_only_its_connection_and_errors_are_counted() {
    let (h, rx) = collecting(ListenerConfig::new());
    let mut good = raw(h.local_addr());
    let mut bad = raw(h.local_addr());
    send(&mut good, &frame(b"err"));
    send(&mut bad, &frame(b"panic"));
    wait_closed(&mut bad);
    send(&mut good, &frame(b"still here"));
    assert_eq!(recv(&rx), b"still here");
    let st = h.stats();
    assert_eq!((st.callback_panics, st.callback_errors), (1, 1));
}

#[test]
fn graceful_shutdown_delivers_received_messages_and_releases_the_port() {
    let (gate_tx, gate_rx) = mpsc::channel::<()>();
    let gate_rx = std::sync::Mutex::new(gate_rx);
    let (tx, rx) = mpsc::channel();
    let (started_tx, started_rx) = mpsc::channel();
    let l = Listener::<BigEndian<4>>::bind("127.0.0.1:0", ListenerConfig::new()).unwrap();
    let addr = l.local_addr();
    let h = l
        .spawn(move |m: &[u8]| {
            if m == b"first" {
                started_tx.send(())?;
                // Hold the connection thread so the rest piles up in the kernel.
                gate_rx.lock().unwrap().recv()?;
            }
            tx.send(m.to_vec())?;
            Ok(())
        })
        .expect("spawn the listener");
    let mut s = raw(addr);
    send(&mut s, &frame(b"first"));
    started_rx.recv_timeout(LONG).unwrap();
    let mut wire = Vec::new();
    for i in 0..100u32 {
        wire.extend_from_slice(&frame(&i.to_be_bytes()));
    }
    wire.extend_from_slice(&frame(b"never delivered")[..7]);
    send(&mut s, &wire);
    let stopper = thread::spawn(move || h.shutdown());
    gate_tx.send(()).unwrap();
    stopper.join().unwrap();
    assert_eq!(rx.recv().unwrap(), b"first");
    for i in 0..100u32 {
        assert_eq!(rx.recv_timeout(LONG).unwrap(), i.to_be_bytes());
    }
    assert!(
        rx.try_recv().is_err(),
        "partial frame must not be delivered"
    );
    // The port is free again at once.
    let again = Listener::<BigEndian<4>>::bind(addr, ListenerConfig::new()).unwrap();
    assert_eq!(again.local_addr(), addr);
}

#[test]
fn shutdown_serves_peers_still_in_the_backlog() {
    // Peers whose connect() completed but whom the accept thread had not reached yet, as on
    // a loaded machine: shutdown is signalled before `run` even starts accepting.
    let l = Listener::<BigEndian<4>>::bind("127.0.0.1:0", ListenerConfig::new()).unwrap();
    let addr = l.local_addr();
    let mut peers: Vec<_> = (0..3u8).map(|_| raw(addr)).collect();
    for (p, s) in peers.iter_mut().enumerate() {
        let mut wire = Vec::new();
        for i in 0..50u8 {
            wire.extend_from_slice(&frame(&[p as u8, i]));
        }
        wire.extend_from_slice(&frame(b"partial")[..6]);
        send(s, &wire);
    }
    let handle = l.shutdown_handle();
    handle.shutdown();
    let (tx, rx) = mpsc::channel();
    l.run(move |m: &[u8]| Ok(tx.send(m.to_vec())?));
    let mut got: Vec<Vec<u8>> = rx.try_iter().collect();
    got.sort();
    let want: Vec<Vec<u8>> = (0..3u8)
        .flat_map(|p| (0..50u8).map(move |i| vec![p, i]))
        .collect();
    assert_eq!(got, want, "every whole message, no partial one");
    let st = handle.stats();
    // The wake-up connection shutdown makes for itself is not a peer.
    assert_eq!(st.connections_total, 3);
    assert_eq!(st.truncated, 3);
    for s in &mut peers {
        wait_closed(s);
    }
}

#[test]
fn run_blocks_until_shutdown_handle() {
    let l = Listener::<BigEndian<4>>::bind("127.0.0.1:0", ListenerConfig::new()).unwrap();
    let stop = l.shutdown_handle();
    let addr = l.local_addr();
    let (tx, rx) = mpsc::channel();
    let t = thread::spawn(move || l.run(move |m: &[u8]| Ok(tx.send(m.to_vec())?)));
    let mut s = raw(addr);
    send(&mut s, &frame(b"x"));
    assert_eq!(rx.recv_timeout(LONG).unwrap(), b"x");
    stop.shutdown();
    t.join().unwrap();
    wait_closed(&mut s);
}

#[test]
fn peer_that_never_reads_replies_cannot_hang_shutdown() {
    let config = ListenerConfig::new()
        .with_max_frame_len(1 << 20)
        .with_write_timeout(Some(Duration::from_millis(300)));
    let l = Listener::<BigEndian<4>>::bind("127.0.0.1:0", config).unwrap();
    let big = vec![1u8; 1 << 20];
    let h = l
        .spawn_with_reply(move |_, conn| {
            conn.reply(&big)?;
            Ok(())
        })
        .expect("spawn the listener");
    let mut s = raw(h.local_addr());
    // Ask for far more reply bytes than the socket buffers hold, and never read them.
    for _ in 0..64 {
        if std::io::Write::write_all(&mut s, &frame(b"more")).is_err() {
            break;
        }
    }
    eventually("the blocked reply to time out", || h.stats().io_errors >= 1);
    h.shutdown();
}

#[test]
fn a_listener_that_cannot_start_its_thread_says_so() {
    // A 256 TiB stack is more than the address space: no thread can be started with it.
    let config = ListenerConfig::new().with_thread_stack(Some(1 << 48));
    let l = Listener::<BigEndian<4>>::bind("127.0.0.1:0", config.clone()).unwrap();
    let addr = l.local_addr();
    let spawned = l.spawn(|_: &[u8]| Ok(()));
    assert!(matches!(spawned, Err(Error::Io(_))), "{spawned:?}");
    // The listener went with the failed start: its port is free again.
    drop(std::net::TcpListener::bind(addr).expect("the port was released"));
    let m: Manager = Manager::new();
    let started = m.start_listening("127.0.0.1:0", config, |_: &[u8]| Ok(()));
    assert!(matches!(started, Err(Error::Io(_))), "{started:?}");
    assert!(m.listeners().is_empty());
}

#[test]
fn skip_closes_a_connection_that_declares_an_impossible_length() {
    // Under Oversize::Skip, an 8-byte header with its top bit set would have the connection
    // discard everything it sends for ever; it is a protocol error instead.
    let (tx, rx) = mpsc::channel();
    let config = ListenerConfig::new().with_oversize(Oversize::Skip);
    let l = Listener::<BigEndian<8>>::bind("127.0.0.1:0", config).unwrap();
    let h = l
        .spawn(move |m: &[u8]| Ok(tx.send(m.to_vec())?))
        .expect("spawn the listener");
    let mut bad = raw(h.local_addr());
    let mut good = raw(h.local_addr());
    let mut wire = (1u64 << 63).to_be_bytes().to_vec();
    wire.extend_from_slice(&5u64.to_be_bytes());
    wire.extend_from_slice(b"after");
    send(&mut bad, &wire);
    wait_closed(&mut bad);
    let mut ok = 5000u64.to_be_bytes().to_vec(); // over the 4096 maximum: skipped
    ok.extend_from_slice(&[0; 5000]);
    ok.extend_from_slice(&2u64.to_be_bytes());
    ok.extend_from_slice(b"ok");
    send(&mut good, &ok);
    assert_eq!(recv(&rx), b"ok");
    let st = h.stats();
    assert_eq!((st.protocol_errors, st.skipped), (1, 1), "{st:?}");
    assert!(
        rx.try_recv().is_err(),
        "nothing after the impossible header was delivered"
    );
}

#[test]
fn on_protocol_error_names_the_peer_and_the_error() {
    let (tx, errors) = mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    let h = Listener::<BigEndian<4>>::bind("127.0.0.1:0", ListenerConfig::new())
        .unwrap()
        .on_protocol_error(move |peer, e| {
            tx.lock().unwrap().send((peer, *e)).unwrap();
            // A panicking hook only loses itself: the connection closes as it would anyway.
            panic!("the hook panicked");
        })
        .spawn(|_: &[u8]| Ok(()))
        .unwrap();
    let mut bad = raw(h.local_addr());
    // 0x6b 0x5c 0x00 0x00: 1.8 GB declared.
    send(&mut bad, &[0x6b, 0x5c, 0x00, 0x00]);
    wait_closed(&mut bad);
    let (peer, e) = errors.recv_timeout(LONG).expect("the hook was not called");
    assert_eq!(peer, bad.local_addr().unwrap());
    assert_eq!(
        e,
        buffstreams_transport_std::DecodeError::FrameTooLong {
            len: 0x6b5c_0000,
            max: 4096
        }
    );
    let mut good = raw(h.local_addr());
    send(&mut good, &frame(b"still serving"));
    let stats = h.shutdown();
    assert_eq!(
        (stats.protocol_errors, stats.messages_in),
        (1, 1),
        "{stats:?}"
    );
}

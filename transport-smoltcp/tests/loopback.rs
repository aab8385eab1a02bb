//! Both ends in one `Interface` on `phy::Loopback`, simulated clock: the listener and the
//! writer against each other and against hand-driven (hostile) peers.

mod common;

use buffstreams_framing::{BigEndian, Config, Decoder, Encoder, Oversize, Varint32};
use buffstreams_transport_smoltcp::{
    Listener, ListenerConfig, RetryPolicy, SendError, Slot, Status, Writer, WriterConfig,
    write_frame, write_frames,
};
use common::{Net, PORT, payload, server};
use smoltcp::iface::SocketHandle;
use smoltcp::socket::tcp;
use smoltcp::time::Duration;

type Echo<const N: usize> = Listener<BigEndian<4>, Vec<u8>, Vec<u8>, N>;

fn echo_listener<const N: usize>(
    net: &mut Net,
    rx: usize,
    tx: usize,
    config: ListenerConfig,
) -> Echo<N> {
    let slots = [(); N].map(|_| Slot::new(net.tcp(rx, tx), vec![0u8; 8192], vec![0u8; 8192]));
    Listener::new(config, slots)
}

/// Polls until `done` or the step budget runs out (then fails: a hang is a bug).
fn run_until(net: &mut Net, steps: usize, mut each: impl FnMut(&mut Net) -> bool) {
    for _ in 0..steps {
        net.poll();
        if each(net) {
            return;
        }
    }
    panic!("not done within {steps} steps");
}

#[test]
fn echo_many_frames_both_ways() {
    let mut net = Net::new();
    let config = ListenerConfig::new(PORT).with_framing(Config::new().with_max_frame_len(2000));
    let mut listener: Echo<2> = echo_listener(&mut net, 4096, 4096, config);
    let h = net.tcp(4096, 4096);
    let wcfg = WriterConfig::new().with_framing(Config::new().with_max_frame_len(2000));
    let mut writer = Writer::<BigEndian<4>, _>::new(h, server(), wcfg, vec![0u8; 2000]);
    const COUNT: usize = 3000;
    let (mut sent, mut got) = (0usize, 0usize);
    run_until(&mut net, 200_000, |net| {
        writer.poll(net.iface.context(), &mut net.sockets, net.now);
        listener.poll(&mut net.sockets, net.now, |msg, conn| {
            conn.reply(msg).unwrap();
        });
        while sent < COUNT {
            match writer.write(&mut net.sockets, &payload(sent, 1500)) {
                Ok(_) => sent += 1,
                Err(SendError::Full { .. } | SendError::NotConnected) => break,
                Err(e) => panic!("write {sent}: {e}"),
            }
        }
        writer
            .receive(&mut net.sockets, |reply| {
                assert_eq!(reply, &payload(got, 1500)[..], "reply {got}");
                got += 1;
            })
            .unwrap();
        got == COUNT
    });
    let ls = listener.stats();
    assert_eq!(
        (ls.messages_in, ls.messages_out),
        (COUNT as u64, COUNT as u64)
    );
    assert_eq!(
        (ls.protocol_errors, ls.truncated, ls.connections_total),
        (0, 0, 1)
    );
    let ws = writer.stats();
    assert_eq!(
        (ws.messages_out, ws.replies, ws.reconnects),
        (COUNT as u64, COUNT as u64, 0)
    );
    assert!(
        ws.full > 0,
        "the 4 KiB ring never filled: the test did not exercise Full"
    );
}

#[test]
fn frames_larger_than_the_socket_buffers_are_assembled_in_storage() {
    let mut net = Net::new();
    let config = ListenerConfig::new(PORT).with_framing(Config::new().with_max_frame_len(6000));
    // 256-byte receive rings; 6000-byte messages arrive in many segments and wrap many times.
    let mut listener: Echo<1> = {
        let slots = [Slot::new(net.tcp(256, 256), vec![0u8; 6000], vec![0u8; 16])];
        Listener::new(config, slots)
    };
    let h = net.tcp(256, 8192);
    let wcfg = WriterConfig::new().with_framing(Config::new().with_max_frame_len(6000));
    let mut writer = Writer::<BigEndian<4>, _>::new(h, server(), wcfg, [0u8; 0]);
    let mut received = Vec::new();
    let mut sent = 0usize;
    run_until(&mut net, 100_000, |net| {
        writer.poll(net.iface.context(), &mut net.sockets, net.now);
        listener.poll(&mut net.sockets, net.now, |msg, _| {
            received.push(msg.to_vec())
        });
        if sent < 20
            && writer
                .write(&mut net.sockets, &vec![sent as u8; 4000 + sent * 50])
                .is_ok()
        {
            sent += 1;
        }
        received.len() == 20
    });
    for (i, m) in received.iter().enumerate() {
        assert_eq!(m, &vec![i as u8; 4000 + i * 50], "message {i}");
    }
}

/// The receive ring's position of stream byte `i` is `i % capacity`; frames of 5 bytes
/// (gcd(5, 64) = 1) start at every residue, so the ring's wrap cuts a header after 1, 2 and
/// 3 bytes and a payload at its start, again and again. Varint headers (1 and 2 bytes) too.
#[test]
fn ring_wrap_at_every_offset_of_a_header() {
    fn check<H: buffstreams_framing::LengthPrefix>(sizes: &[usize]) {
        let mut net = Net::new();
        let mut listener: Listener<H, Vec<u8>, [u8; 0], 1> = {
            let slots = [Slot::new(net.tcp(64, 64), vec![0u8; 512], [0u8; 0])];
            Listener::new(ListenerConfig::new(PORT), slots)
        };
        let client = net.tcp(64, 4096);
        net.dial_raw(client, 40000);
        let encoder = Encoder::<H>::default();
        let mut expected = Vec::new();
        for (i, &n) in sizes.iter().cycle().take(64 * 4).enumerate() {
            expected.push(vec![i as u8; n]);
        }
        let (mut next, mut got) = (0usize, 0usize);
        run_until(&mut net, 100_000, |net| {
            listener.poll(&mut net.sockets, net.now, |msg, _| {
                assert_eq!(msg, &expected[got][..], "frame {got}");
                got += 1;
            });
            while next < expected.len() && net.socket(client).may_send() {
                match write_frame(net.socket(client), &encoder, &expected[next]) {
                    Ok(_) => next += 1,
                    Err(SendError::Full { .. }) => break,
                    Err(e) => panic!("{e}"),
                }
            }
            got == expected.len()
        });
        assert_eq!(listener.stats().messages_in, expected.len() as u64);
    }
    check::<BigEndian<4>>(&[1]);
    check::<BigEndian<4>>(&[1, 0, 3, 200, 7]);
    // Varint32: 1-byte headers below 128, 2-byte ones from 128.
    check::<Varint32>(&[130, 3, 129, 0, 200]);
}

#[test]
fn full_send_ring_refuses_the_whole_frame_and_writes_nothing() {
    let mut net = Net::new();
    let mut listener: Echo<1> = echo_listener(&mut net, 64, 64, ListenerConfig::new(PORT));
    let h = net.tcp(64, 64);
    let mut writer = Writer::<BigEndian<4>, _>::new(h, server(), WriterConfig::new(), [0u8; 64]);
    run_until(&mut net, 1000, |net| {
        writer.poll(net.iface.context(), &mut net.sockets, net.now);
        listener.poll(&mut net.sockets, net.now, |_, _| {});
        writer.is_connected()
    });
    // 64-byte ring: a 61-byte payload (65 on the wire) can never go out whole.
    assert_eq!(
        writer.write(&mut net.sockets, &[0; 61]),
        Err(SendError::ExceedsBuffer {
            needed: 65,
            capacity: 64
        })
    );
    assert_eq!(writer.write(&mut net.sockets, &[1; 36]), Ok(40));
    assert!(!writer.can_write(&net.sockets, 30));
    assert_eq!(
        writer.write(&mut net.sockets, &[2; 30]),
        Err(SendError::Full {
            needed: 34,
            free: 24
        })
    );
    assert_eq!(
        writer.pending(&net.sockets),
        40,
        "a refused frame left bytes behind"
    );
    let mut got = Vec::new();
    let (mut retried, mut refused) = (false, 1);
    run_until(&mut net, 1000, |net| {
        writer.poll(net.iface.context(), &mut net.sockets, net.now);
        listener.poll(&mut net.sockets, net.now, |m, _| got.push(m.to_vec()));
        if !retried {
            match writer.write(&mut net.sockets, &[2; 30]) {
                Ok(34) => retried = true,
                Err(SendError::Full { needed: 34, .. }) => refused += 1,
                other => panic!("{other:?}"),
            }
        }
        got.len() == 2
    });
    assert_eq!(got, vec![vec![1; 36], vec![2; 30]]);
    assert_eq!(writer.stats().full, refused);
}

/// The send ring's contiguous window ends before the frame does while the ring as a whole
/// has room: header and payload go in turn, wrapping, and arrive intact.
#[test]
fn frame_wraps_in_the_send_ring() {
    let mut net = Net::new();
    let mut listener: Listener<BigEndian<4>, Vec<u8>, [u8; 0], 1> = {
        let slots = [Slot::new(net.tcp(32, 64), vec![0u8; 256], [0u8; 0])];
        Listener::new(ListenerConfig::new(PORT), slots)
    };
    let client = net.tcp(64, 64);
    net.dial_raw(client, 40001);
    let enc = Encoder::<BigEndian<4>>::default();
    let mut got = Vec::new();
    run_until(&mut net, 1000, |net| {
        listener.poll(&mut net.sockets, net.now, |m, _| got.push(m.to_vec()));
        net.socket(client).may_send()
    });
    assert_eq!(write_frame(net.socket(client), &enc, &[1; 26]), Ok(30));
    assert_eq!(write_frame(net.socket(client), &enc, &[2; 16]), Ok(20));
    // The peer's 32-byte window lets 32 bytes leave; wait until they are acknowledged.
    run_until(&mut net, 1000, |net| {
        listener.poll(&mut net.sockets, net.now, |m, _| got.push(m.to_vec()));
        net.socket(client).send_queue() < 50
    });
    let s = net.socket(client);
    let window = s.send(|w| (0, w.len())).unwrap();
    let free = s.send_capacity() - s.send_queue();
    assert!(
        window < 40 && free >= 40,
        "window {window}, free {free}: no wrap to test"
    );
    assert_eq!(write_frame(s, &enc, &[3; 36]), Ok(40));
    run_until(&mut net, 1000, |net| {
        listener.poll(&mut net.sockets, net.now, |m, _| got.push(m.to_vec()));
        got.len() == 3
    });
    assert_eq!(got, vec![vec![1; 26], vec![2; 16], vec![3; 36]]);
}

/// A hand-driven peer: connects, sends `bytes`, closes; returns what the listener handled.
fn raw_peer_session(
    net: &mut Net,
    listener: &mut Echo<2>,
    client: SocketHandle,
    port: u16,
    bytes: &[u8],
) -> Vec<Vec<u8>> {
    net.dial_raw(client, port);
    let mut got = Vec::new();
    let mut sent = false;
    run_until(net, 2000, |net| {
        listener.poll(&mut net.sockets, net.now, |m, _| got.push(m.to_vec()));
        let s = net.socket(client);
        if !sent && s.may_send() {
            assert_eq!(s.send_slice(bytes).unwrap(), bytes.len());
            s.close();
            sent = true;
        }
        sent && !net.socket(client).is_open()
    });
    got
}

#[test]
fn peer_close_mid_frame_is_counted_not_delivered_and_the_slot_listens_again() {
    let mut net = Net::new();
    let mut listener: Echo<2> = echo_listener(&mut net, 512, 512, ListenerConfig::new(PORT));
    let c = net.tcp(512, 512);
    // One whole frame, then a header declaring 10 bytes and only 3 of them, then FIN.
    let got = raw_peer_session(
        &mut net,
        &mut listener,
        c,
        40010,
        &[0, 0, 0, 1, 9, 0, 0, 0, 10, 1, 2, 3],
    );
    assert_eq!(got, vec![vec![9]]);
    let st = listener.stats();
    assert_eq!((st.messages_in, st.truncated), (1, 1));
    // Both slots serve again.
    run_until(&mut net, 100, |net| {
        listener.poll(&mut net.sockets, net.now, |_, _| {});
        (0..2).all(|i| {
            net.sockets
                .get::<tcp::Socket>(listener.handle(i).unwrap())
                .is_listening()
        })
    });
}

#[test]
fn oversize_reject_aborts_that_connection_only() {
    let mut net = Net::new();
    let config = ListenerConfig::new(PORT).with_framing(Config::new().with_max_frame_len(100));
    let mut listener: Echo<2> = echo_listener(&mut net, 512, 512, config);
    let good = net.tcp(512, 512);
    let bad = net.tcp(512, 512);
    net.dial_raw(good, 40020);
    net.dial_raw(bad, 40021);
    let enc = Encoder::<BigEndian<4>>::default();
    let mut got = Vec::new();
    let mut stage = 0;
    run_until(&mut net, 5000, |net| {
        listener.poll(&mut net.sockets, net.now, |m, conn| {
            got.push(m.to_vec());
            conn.reply(m).unwrap();
        });
        match stage {
            0 if net.socket(good).may_send() && net.socket(bad).may_send() => {
                write_frame(net.socket(good), &enc, b"before").unwrap();
                // 101 > 100: the header alone is enough to refuse.
                net.socket(bad)
                    .send_slice(&[0, 0, 0, 101, 1, 2, 3])
                    .unwrap();
                stage = 1;
            }
            1 if !net.socket(bad).is_open() => {
                write_frame(net.socket(good), &enc, b"after").unwrap();
                stage = 2;
            }
            _ => {}
        }
        stage == 2 && got.len() == 2
    });
    assert_eq!(got, vec![b"before".to_vec(), b"after".to_vec()]);
    assert_eq!(listener.stats().protocol_errors, 1);
    assert!(
        net.socket(good).may_send(),
        "the good peer lost its connection"
    );
}

#[test]
fn oversize_skip_discards_exactly_that_frame_and_carries_on() {
    let mut net = Net::new();
    let framing = Config::new()
        .with_max_frame_len(8)
        .with_oversize(Oversize::Skip);
    let mut listener: Echo<2> = echo_listener(
        &mut net,
        64,
        64,
        ListenerConfig::new(PORT).with_framing(framing),
    );
    let c = net.tcp(512, 512);
    let mut stream = vec![0, 0, 0, 2, b'o', b'k', 0, 0, 0, 200];
    stream.extend_from_slice(&[0xee; 200]);
    stream.extend_from_slice(&[0, 0, 0, 3, b'y', b'e', b's']);
    let got = raw_peer_session(&mut net, &mut listener, c, 40030, &stream);
    assert_eq!(got, vec![b"ok".to_vec(), b"yes".to_vec()]);
    let st = listener.stats();
    assert_eq!((st.skipped, st.protocol_errors, st.truncated), (1, 0, 0));
}

#[test]
fn garbage_varint_loses_its_socket_only() {
    let mut net = Net::new();
    let mut listener: Listener<Varint32, Vec<u8>, Vec<u8>, 1> = {
        let slots = [Slot::new(net.tcp(64, 64), vec![0u8; 64], vec![0u8; 64])];
        Listener::new(ListenerConfig::new(PORT), slots)
    };
    let c = net.tcp(64, 64);
    net.dial_raw(c, 40040);
    let mut sent = false;
    run_until(&mut net, 2000, |net| {
        listener.poll(&mut net.sockets, net.now, |_, _| {
            panic!("garbage delivered")
        });
        if !sent && net.socket(c).may_send() {
            net.socket(c).send_slice(&[0xff; 6]).unwrap();
            sent = true;
        }
        sent && !net.socket(c).is_open()
    });
    assert_eq!(listener.stats().protocol_errors, 1);
}

#[test]
fn writer_reconnects_after_the_listener_aborts() {
    let mut net = Net::new();
    let mut listener: Echo<1> = echo_listener(&mut net, 1024, 1024, ListenerConfig::new(PORT));
    let h = net.tcp(1024, 1024);
    let mut writer = Writer::<BigEndian<4>, _>::new(h, server(), WriterConfig::new(), [0u8; 64]);
    let mut got: Vec<Vec<u8>> = Vec::new();
    let mut phase = 0;
    run_until(&mut net, 20_000, |net| {
        writer.poll(net.iface.context(), &mut net.sockets, net.now);
        listener.poll(&mut net.sockets, net.now, |m, _| got.push(m.to_vec()));
        match phase {
            0 if writer.is_connected() => {
                writer.write(&mut net.sockets, b"one").unwrap();
                phase = 1;
            }
            1 if got.len() == 1 => {
                // The listener drops every connection (RST); its slots listen again next poll.
                listener.close(&mut net.sockets);
                phase = 2;
            }
            2 if writer.stats().disconnects == 1 && writer.is_connected() => {
                writer.write(&mut net.sockets, b"two").unwrap();
                phase = 3;
            }
            _ => {}
        }
        phase == 3 && got.len() == 2
    });
    assert_eq!(got, vec![b"one".to_vec(), b"two".to_vec()]);
    let ws = writer.stats();
    assert_eq!((ws.reconnects, ws.disconnects), (1, 1));
}

#[test]
fn writer_backs_off_exponentially_and_gives_up() {
    let mut net = Net::new();
    let h = net.tcp(256, 256);
    let retry = RetryPolicy::new()
        .with_initial_backoff(Duration::from_millis(100))
        .with_max_attempts(Some(4));
    let mut writer = Writer::<BigEndian<4>, _>::new(
        h,
        server(),
        WriterConfig::new().with_retry(retry),
        [0u8; 0],
    );
    // Nobody listens: each attempt is refused with a RST.
    let mut attempts_at = Vec::new();
    let mut last = 0;
    run_until(&mut net, 10_000, |net| {
        let status = writer.poll(net.iface.context(), &mut net.sockets, net.now);
        if writer.stats().connect_attempts != last {
            last = writer.stats().connect_attempts;
            attempts_at.push(net.now.total_millis());
        }
        status == Status::GaveUp
    });
    assert_eq!(writer.stats().connect_failures, 4);
    assert_eq!(attempts_at.len(), 4);
    let gaps: Vec<i64> = attempts_at.windows(2).map(|w| w[1] - w[0]).collect();
    // Equal jitter: each gap is half to all of 100, 200, 400 ms (plus a few ms of refusal).
    for (gap, base) in gaps.iter().zip([100, 200, 400]) {
        assert!(*gap >= base / 2 && *gap <= base + 10, "gaps {gaps:?}");
    }
    writer.reconnect();
    assert!(matches!(
        writer.poll(net.iface.context(), &mut net.sockets, net.now),
        Status::Connecting
    ));
}

#[test]
fn idle_connection_is_aborted_after_the_timeout() {
    let mut net = Net::new();
    let config = ListenerConfig::new(PORT).with_idle_timeout(Some(Duration::from_secs(2)));
    let mut listener: Echo<1> = echo_listener(&mut net, 64, 64, config);
    let c = net.tcp(64, 64);
    net.dial_raw(c, 40050);
    net.step = Duration::from_millis(10);
    let start = net.now;
    run_until(&mut net, 1000, |net| {
        listener.poll(&mut net.sockets, net.now, |_, _| {});
        !net.socket(c).is_open()
    });
    let waited = (net.now - start).total_millis();
    assert!((2000..2200).contains(&waited), "aborted after {waited} ms");
    assert_eq!(listener.stats().idle_timeouts, 1);
}

#[test]
fn handler_close_sends_its_reply_then_fin() {
    let mut net = Net::new();
    let mut listener: Echo<1> = echo_listener(&mut net, 64, 64, ListenerConfig::new(PORT));
    let c = net.tcp(256, 64);
    net.dial_raw(c, 40060);
    let enc = Encoder::<BigEndian<4>>::default();
    let mut sent = false;
    let mut handled = 0;
    let mut dec = Decoder::<BigEndian<4>, _>::new(Config::new(), [0u8; 64]);
    let mut replies = Vec::new();
    run_until(&mut net, 2000, |net| {
        listener.poll(&mut net.sockets, net.now, |m, conn| {
            handled += 1;
            conn.reply(m).unwrap();
            conn.close();
            assert!(conn.reply(b"late").is_err());
        });
        let s = net.socket(c);
        if !sent && s.may_send() {
            // Two messages in one segment: only the first is handled.
            write_frame(s, &enc, b"bye").unwrap();
            write_frame(s, &enc, b"ignored").unwrap();
            sent = true;
        }
        let _ = buffstreams_transport_smoltcp::read_frames(s, &mut dec, |e| {
            if let buffstreams_framing::Event::Frame(f) = e {
                replies.push(f.to_vec());
            }
            std::ops::ControlFlow::Continue(())
        });
        sent && !net.socket(c).may_recv()
    });
    assert_eq!(replies, vec![b"bye".to_vec()]);
    assert_eq!(handled, 1);
}

#[test]
fn write_batch_is_all_or_nothing() {
    let mut net = Net::new();
    let mut listener: Echo<1> = echo_listener(&mut net, 256, 64, ListenerConfig::new(PORT));
    let h = net.tcp(64, 64);
    let wcfg = WriterConfig::new().with_framing(Config::new().with_max_frame_len(30));
    let mut writer = Writer::<BigEndian<4>, _>::new(h, server(), wcfg, [0u8; 0]);
    run_until(&mut net, 1000, |net| {
        writer.poll(net.iface.context(), &mut net.sockets, net.now);
        listener.poll(&mut net.sockets, net.now, |_, _| {});
        writer.is_connected()
    });
    let (a, b, c) = ([1u8; 20], [2u8; 20], [3u8; 20]);
    // 72 bytes can never be queued at once in a 64-byte ring, although each frame could.
    assert_eq!(
        writer.write_batch(&mut net.sockets, &[&a, &b, &c]),
        Err(SendError::ExceedsBuffer {
            needed: 72,
            capacity: 64
        })
    );
    // One payload over the maximum fails the batch before anything is queued.
    assert!(matches!(
        writer.write_batch(&mut net.sockets, &[&a, &[0u8; 31]]),
        Err(SendError::Encode(_))
    ));
    assert_eq!(writer.pending(&net.sockets), 0);
    assert_eq!(writer.write_batch(&mut net.sockets, &[&a, &b]), Ok(48));
    assert_eq!(
        writer.write_batch(&mut net.sockets, &[&c[..6], &c[..6]]),
        Err(SendError::Full {
            needed: 20,
            free: 16
        })
    );
    assert_eq!(
        writer.pending(&net.sockets),
        48,
        "a refused batch left bytes behind"
    );
    assert_eq!(
        writer.write_batch(&mut net.sockets, &[&c[..6], &c[..2]]),
        Ok(16)
    );
    assert_eq!(writer.write_batch(&mut net.sockets, &[]), Ok(0));
    let mut got = Vec::new();
    run_until(&mut net, 1000, |net| {
        writer.poll(net.iface.context(), &mut net.sockets, net.now);
        listener.poll(&mut net.sockets, net.now, |m, _| got.push(m.to_vec()));
        got.len() == 4
    });
    assert_eq!(
        got,
        vec![a.to_vec(), b.to_vec(), c[..6].to_vec(), c[..2].to_vec()]
    );
    assert_eq!(writer.stats().messages_out, 4);
}

/// As `frame_wraps_in_the_send_ring`, for a batch: the window ends before the batch does.
#[test]
fn batch_wraps_in_the_send_ring() {
    let mut net = Net::new();
    let mut listener: Listener<BigEndian<4>, Vec<u8>, [u8; 0], 1> = {
        let slots = [Slot::new(net.tcp(32, 64), vec![0u8; 256], [0u8; 0])];
        Listener::new(ListenerConfig::new(PORT), slots)
    };
    let client = net.tcp(64, 64);
    net.dial_raw(client, 40002);
    let enc = Encoder::<BigEndian<4>>::default();
    let mut got = Vec::new();
    run_until(&mut net, 1000, |net| {
        listener.poll(&mut net.sockets, net.now, |m, _| got.push(m.to_vec()));
        net.socket(client).may_send()
    });
    assert_eq!(
        write_frames(net.socket(client), &enc, &[&[1; 26], &[2; 16]]),
        Ok(50)
    );
    run_until(&mut net, 1000, |net| {
        listener.poll(&mut net.sockets, net.now, |m, _| got.push(m.to_vec()));
        net.socket(client).send_queue() < 50
    });
    let s = net.socket(client);
    let window = s.send(|w| (0, w.len())).unwrap();
    assert!(
        window < 40 && s.send_capacity() - s.send_queue() >= 40,
        "no wrap to test"
    );
    assert_eq!(write_frames(s, &enc, &[&[3; 10], &[4; 22]]), Ok(40));
    run_until(&mut net, 1000, |net| {
        listener.poll(&mut net.sockets, net.now, |m, _| got.push(m.to_vec()));
        got.len() == 4
    });
    assert_eq!(
        got,
        vec![vec![1; 26], vec![2; 16], vec![3; 10], vec![4; 22]]
    );
}

/// The server answers and closes at once; the writer's loop polls before it reads. Replies
/// that arrived before the close are still handed to `receive` before the writer redials.
#[test]
fn replies_that_arrived_before_the_peer_closed_are_delivered() {
    let mut net = Net::new();
    let mut listener: Echo<1> = echo_listener(&mut net, 512, 512, ListenerConfig::new(PORT));
    let h = net.tcp(512, 512);
    let mut writer = Writer::<BigEndian<4>, _>::new(h, server(), WriterConfig::new(), [0u8; 64]);
    let (mut written, mut replies) = (0, Vec::new());
    run_until(&mut net, 5000, |net| {
        writer.poll(net.iface.context(), &mut net.sockets, net.now);
        listener.poll(&mut net.sockets, net.now, |m, conn| {
            conn.reply(m).unwrap();
            if m == b"last" {
                conn.close();
            }
        });
        if writer.is_connected() && written == 0 {
            let batch: [&[u8]; 3] = [b"one", b"two", b"last"];
            writer.write_batch(&mut net.sockets, &batch).unwrap();
            written = 3;
        }
        writer
            .receive(&mut net.sockets, |m| replies.push(m.to_vec()))
            .unwrap();
        writer.stats().disconnects == 1
    });
    assert_eq!(
        replies,
        vec![b"one".to_vec(), b"two".to_vec(), b"last".to_vec()]
    );
}

/// A peer that keeps a frame open by trickling its bytes (one every 500 ms, so the idle
/// timeout never fires) loses its slot at the frame deadline. A peer that sends whole frames
/// slowly keeps its slot, and so does one that streams without pause, whose every poll ends
/// inside a message (the deadline restarts with each message, not each quiet moment).
#[test]
fn a_frame_that_never_finishes_is_cut_at_the_deadline() {
    let mut net = Net::new();
    net.step = Duration::from_millis(100);
    let config = ListenerConfig::new(PORT)
        .with_idle_timeout(Some(Duration::from_secs(30)))
        .with_frame_timeout(Some(Duration::from_secs(5)));
    let mut listener: Echo<3> = echo_listener(&mut net, 256, 256, config);
    let slow = net.tcp(256, 256);
    let patient = net.tcp(256, 256);
    let streamer = net.tcp(256, 256);
    net.dial_raw(slow, 40070);
    net.dial_raw(patient, 40071);
    net.dial_raw(streamer, 40072);
    let enc = Encoder::<BigEndian<4>>::default();
    // The streamer's bytes: 10-byte frames, sent 5 bytes out of step, 10 bytes a tick.
    let mut stream = Vec::new();
    for i in 0..200u8 {
        stream.extend_from_slice(&[0, 0, 0, 6, i, i, i, i, i, i]);
    }
    let (mut ticks, mut got, mut started, mut streamed) = (0u32, 0u32, None, 0usize);
    let mut cut_at = None;
    run_until(&mut net, 2000, |net| {
        listener.poll(&mut net.sockets, net.now, |_, _| got += 1);
        ticks += 1;
        if net.socket(slow).may_send() && ticks % 5 == 0 {
            // A header declaring 100 bytes, then one byte every 500 ms.
            let byte: &[u8] = if started.is_none() {
                &[0, 0, 0, 100]
            } else {
                &[7]
            };
            net.socket(slow).send_slice(byte).unwrap();
            started.get_or_insert(net.now);
        }
        if net.socket(patient).may_send() && ticks % 20 == 0 {
            write_frame(net.socket(patient), &enc, b"still here").unwrap();
        }
        if net.socket(streamer).may_send() && streamed < stream.len() {
            let n = if streamed == 0 { 5 } else { 10 };
            let end = (streamed + n).min(stream.len());
            streamed += net
                .socket(streamer)
                .send_slice(&stream[streamed..end])
                .unwrap();
        }
        if cut_at.is_none() && !net.socket(slow).is_open() {
            cut_at = Some(net.now);
        }
        // Three more seconds after the cut: long enough for a wrong deadline to hit the others.
        cut_at.is_some_and(|t| (net.now - t).total_millis() >= 3000)
    });
    let held = (cut_at.unwrap() - started.unwrap()).total_millis();
    assert!(
        (5000..5500).contains(&held),
        "the trickling peer held its slot {held} ms"
    );
    assert_eq!(listener.stats().frame_timeouts, 1);
    assert_eq!(listener.stats().idle_timeouts, 0);
    assert!(
        net.socket(patient).may_send(),
        "the patient peer lost its connection"
    );
    assert!(
        net.socket(streamer).may_send(),
        "the streaming peer lost its connection"
    );
    assert!(
        streamed >= 800,
        "the streamer sent only {streamed} bytes: not a long stream"
    );
    assert!(got >= 80, "{got} messages handled");
}

/// A reply that does not fit the slot's reply buffer is refused whole, saying what it needed
/// and what was free; the replies staged before it still go out.
#[test]
fn a_reply_over_the_reply_buffer_is_refused_whole() {
    let mut net = Net::new();
    let mut listener: Listener<BigEndian<4>, Vec<u8>, [u8; 16], 1> = {
        let slots = [Slot::new(net.tcp(256, 256), vec![0u8; 64], [0u8; 16])];
        Listener::new(ListenerConfig::new(PORT), slots)
    };
    let c = net.tcp(256, 256);
    net.dial_raw(c, 40080);
    let enc = Encoder::<BigEndian<4>>::default();
    let mut dec = Decoder::<BigEndian<4>, _>::new(Config::new(), [0u8; 64]);
    let (mut sent, mut refused, mut replies) = (false, None, Vec::new());
    run_until(&mut net, 2000, |net| {
        listener.poll(&mut net.sockets, net.now, |_, conn| {
            assert_eq!(conn.reply(b"0123456789"), Ok(14));
            refused = Some(conn.reply(b"abc"));
        });
        let s = net.socket(c);
        if !sent && s.may_send() {
            write_frame(s, &enc, b"ask").unwrap();
            sent = true;
        }
        buffstreams_transport_smoltcp::read_frames(s, &mut dec, |e| {
            if let buffstreams_framing::Event::Frame(f) = e {
                replies.push(f.to_vec());
            }
            std::ops::ControlFlow::Continue(())
        })
        .unwrap();
        !replies.is_empty()
    });
    assert_eq!(
        refused,
        Some(Err(buffstreams_transport_smoltcp::ReplyError::Full {
            needed: 7,
            free: 2
        }))
    );
    assert_eq!(replies, vec![b"0123456789".to_vec()]);
    assert_eq!(listener.stats().replies_refused, 1);
}

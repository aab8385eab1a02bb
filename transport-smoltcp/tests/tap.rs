//! smoltcp over a TAP device against the Linux kernel's TCP, both directions, with
//! transport-std on the kernel side: a smoltcp `Writer` into a transport-std `Listener` that
//! echoes every message, and a transport-std `Writer` into a smoltcp `Listener`; then the
//! same in the acknowledged mode, with connections cut and listeners restarted mid-stream.
//!
//! The TAP device exists only inside a network namespace that the test creates and always
//! deletes: nothing is added to the root namespace and nothing can leave the machine. Needs
//! root; without it the test says why it skips, and with `BUFFSTREAMS_NO_SKIP` set (CI)
//! it fails instead.

mod common;

use std::os::fd::AsRawFd;
use std::sync::mpsc;
use std::time::{Duration as StdDuration, Instant as StdInstant};

use buffstreams_framing::{BigEndian, Config};
use buffstreams_test_support::{Netns, root_or_skip};
use buffstreams_transport_smoltcp::{
    Listener, ListenerConfig, SendError, Slot, Writer, WriterConfig,
};
use common::payload;
use smoltcp::iface::{Config as IfaceConfig, Interface, SocketSet};
use smoltcp::phy::{Medium, TunTapInterface, wait as phy_wait};
use smoltcp::socket::tcp;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{EthernetAddress, IpAddress, IpCidr, IpEndpoint};

const INSIDE: &str = "BUFFSTREAMS_TAP_INSIDE_NETNS";
const COUNT: usize = 5000;
const MAX: usize = 1400;

/// Runs test `inner` of this binary inside a new network namespace with a TAP device, unless
/// this is not root (then it says why it skips, or fails under `BUFFSTREAMS_NO_SKIP`).
fn in_namespace(tag: &str, inner: &str) {
    if std::env::var_os(INSIDE).is_some() {
        return;
    }
    if !root_or_skip() {
        return;
    }
    let ns = Netns::create(tag);
    let exe = std::env::current_exe().unwrap();
    let out = ns
        .exec(exe)
        .args([
            "--exact",
            inner,
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(INSIDE, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    // Echo what the inner run said, but not its result line (CI adds those up).
    for line in stdout.lines().filter(|l| !l.starts_with("test result")) {
        println!("  | {line}");
    }
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "the run inside the namespace failed"
    );
}

#[test]
fn tap_both_directions_against_transport_std() {
    in_namespace("plain", "inside_the_namespace");
}

#[test]
fn tap_acknowledged_both_directions_with_cuts_and_restarts() {
    in_namespace("acked", "inside_the_namespace_acked");
}

/// The smoltcp side of the TAP device (192.168.69.1), from inside the namespace.
fn tap_interface() -> (TunTapInterface, Interface) {
    assert!(
        std::env::var_os(INSIDE).is_some(),
        "run only inside the test's namespace"
    );
    let mut device = TunTapInterface::new("tap0", Medium::Ethernet).unwrap();
    let mut config = IfaceConfig::new(EthernetAddress([0x02, 0, 0, 0, 0, 0x01]).into());
    config.random_seed = 0x5eed;
    let mut iface = Interface::new(config, &mut device, Instant::now());
    iface.update_ip_addrs(|a| {
        a.push(IpCidr::new(IpAddress::v4(192, 168, 69, 1), 24))
            .unwrap()
    });
    (device, iface)
}

#[test]
#[ignore = "run by tap_both_directions_against_transport_std inside its network namespace"]
fn inside_the_namespace() {
    let started = StdInstant::now();
    let (mut device, mut iface) = tap_interface();
    let fd = device.as_raw_fd();

    // Kernel side: a transport-std listener that echoes every message.
    let (seen_tx, seen_rx) = mpsc::channel();
    let std_config = buffstreams_transport_std::ListenerConfig::new().with_max_frame_len(MAX);
    let std_listener: buffstreams_transport_std::Listener =
        buffstreams_transport_std::Listener::bind("192.168.69.100:5031", std_config).unwrap();
    let echo = std_listener
        .spawn_with_reply(move |msg, conn| {
            seen_tx.send(msg.to_vec()).ok();
            conn.reply(msg)?;
            Ok(())
        })
        .expect("spawn the listener");

    let framing = Config::new().with_max_frame_len(MAX);
    let mut sockets = SocketSet::new(vec![]);
    let new_socket = || {
        tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; 16 * 1024]),
            tcp::SocketBuffer::new(vec![0; 16 * 1024]),
        )
    };
    let remote = IpEndpoint::new(IpAddress::v4(192, 168, 69, 100), 5031);
    let mut writer = Writer::<BigEndian<4>, _>::new(
        sockets.add(new_socket()),
        remote,
        WriterConfig::new().with_framing(framing).with_seed(7),
        vec![0u8; MAX],
    );
    let mut listener: Listener<BigEndian<4>, Vec<u8>, [u8; 0], 1> = Listener::new(
        ListenerConfig::new(5032).with_framing(framing),
        [Slot::new(
            sockets.add(new_socket()),
            vec![0u8; MAX],
            [0u8; 0],
        )],
    );

    // Kernel side: a transport-std writer into the smoltcp listener.
    let std_writer = std::thread::spawn(|| {
        let config = buffstreams_transport_std::WriterConfig::new().with_max_frame_len(MAX);
        let w: buffstreams_transport_std::Writer =
            buffstreams_transport_std::Writer::dial("192.168.69.1:5032", config).unwrap();
        for i in 0..COUNT {
            w.write(&payload(i, MAX)).unwrap();
        }
        w.close()
    });

    let (mut sent, mut echoed, mut received) = (0usize, 0usize, 0usize);
    while echoed < COUNT || received < COUNT {
        assert!(
            started.elapsed() < StdDuration::from_secs(60),
            "stalled: sent {sent}, echoed {echoed}, received {received} of {COUNT}"
        );
        let now = Instant::now();
        iface.poll(now, &mut device, &mut sockets);
        writer.poll(iface.context(), &mut sockets, now);
        listener.poll(&mut sockets, now, |msg, _| {
            assert_eq!(
                msg,
                &payload(received, MAX)[..],
                "std -> smoltcp message {received}"
            );
            received += 1;
        });
        while sent < COUNT {
            match writer.write(&mut sockets, &payload(sent, MAX)) {
                Ok(_) => sent += 1,
                Err(SendError::Full { .. } | SendError::NotConnected) => break,
                Err(e) => panic!("smoltcp write {sent}: {e}"),
            }
        }
        writer
            .receive(&mut sockets, |msg| {
                assert_eq!(msg, &payload(echoed, MAX)[..], "echo {echoed}");
                echoed += 1;
            })
            .unwrap();
        iface.poll(now, &mut device, &mut sockets);
        let delay = iface
            .poll_delay(now, &sockets)
            .unwrap_or(Duration::from_millis(5));
        phy_wait(fd, Some(delay.min(Duration::from_millis(5)))).unwrap();
    }
    for i in 0..COUNT {
        let msg = seen_rx.recv_timeout(StdDuration::from_secs(5)).unwrap();
        assert_eq!(msg, payload(i, MAX), "smoltcp -> std message {i}");
    }
    let wstats = std_writer.join().unwrap();
    let lstats = echo.shutdown();
    assert_eq!(lstats.messages_in, COUNT as u64);
    assert_eq!(listener.stats().messages_in, COUNT as u64);
    assert_eq!(listener.stats().protocol_errors, 0);
    println!(
        "smoltcp writer -> std listener -> echo: {COUNT} messages each way; std writer -> smoltcp listener: {COUNT}; {:?} in all; std writer reconnects {}",
        started.elapsed(),
        wstats.reconnects
    );
}

/// A message of the acknowledged run: its index, then filler.
fn numbered(i: u64) -> Vec<u8> {
    let mut m = i.to_be_bytes().to_vec();
    m.resize(8 + (i % 200) as usize, 0xa7);
    m
}

fn index_of(m: &[u8]) -> u64 {
    u64::from_be_bytes(m[..8].try_into().unwrap())
}

/// Deliveries `(index, seq, may_repeat)` of one session: each message numbered as written,
/// none missing, and a message seen twice only when marked.
fn check_once(what: &str, seen: &[(u64, u64, bool)], n: u64) -> u64 {
    let mut first = std::collections::HashSet::new();
    let mut repeats = 0;
    for &(i, seq, may_repeat) in seen {
        assert_eq!(seq, i + 1, "{what}: message {i} numbered {seq}");
        if !first.insert(i) {
            assert!(
                may_repeat,
                "{what}: message {i} delivered again without may_repeat"
            );
            repeats += 1;
        }
    }
    assert_eq!(first.len() as u64, n, "{what}: messages missing");
    repeats
}

#[test]
#[ignore = "run by tap_acknowledged_both_directions_with_cuts_and_restarts inside its namespace"]
fn inside_the_namespace_acked() {
    use buffstreams_framing::acked::{SessionId, SessionSlot, Window};
    use std::sync::{Arc, Mutex};
    const N: u64 = 6_000;
    let started = StdInstant::now();
    let (mut device, mut iface) = tap_interface();
    let fd = device.as_raw_fd();
    let mut sockets = SocketSet::new(vec![]);
    let new_socket = || {
        tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; 16 * 1024]),
            tcp::SocketBuffer::new(vec![0; 16 * 1024]),
        )
    };

    // smoltcp writer -> transport-std listener, restarted once on the same port.
    type Seen = Arc<Mutex<Vec<(u64, u64, bool)>>>;
    let std_seen: Seen = Arc::default();
    let record = |seen: Seen| {
        let config = buffstreams_transport_std::ListenerConfig::new().with_acks(true);
        buffstreams_transport_std::Listener::<BigEndian<4>>::bind("192.168.69.100:5033", config)
            .unwrap()
            .spawn_with_reply(move |m, conn| {
                let d = conn.delivery().unwrap();
                seen.lock()
                    .unwrap()
                    .push((index_of(m), d.seq, d.may_repeat));
                Ok(())
            })
            .unwrap()
    };
    let mut std_side = Some(record(std_seen.clone()));
    let writer_handle = sockets.add(new_socket());
    let retry = buffstreams_transport_smoltcp::RetryPolicy::new()
        .with_initial_backoff(Duration::from_millis(20));
    let mut writer = Writer::<BigEndian<4>, _>::new(
        writer_handle,
        IpEndpoint::new(IpAddress::v4(192, 168, 69, 100), 5033),
        WriterConfig::new().with_seed(9).with_retry(retry),
        vec![0u8; 512],
    )
    .with_acks(
        Window::new([0u8; 64 * 1024], usize::MAX, 4096),
        SessionId([0x31; 16]),
    );

    // transport-std writer -> smoltcp listener, whose sockets are aborted once and whose
    // state is rebuilt once.
    let slot_handles = [sockets.add(new_socket()), sockets.add(new_socket())];
    let smol_listener = || {
        Listener::<BigEndian<4>, Vec<u8>, [u8; 64], 2>::new(
            ListenerConfig::new(5034),
            slot_handles.map(|h| Slot::new(h, vec![0u8; 4096], [0u8; 64])),
        )
        .with_acks([SessionSlot::EMPTY; 4])
    };
    let mut listener = smol_listener();
    let std_writer = std::thread::spawn(|| {
        let config = buffstreams_transport_std::WriterConfig::new()
            .with_acks(true)
            .with_reply_wait(StdDuration::from_secs(20));
        let w: buffstreams_transport_std::Writer =
            buffstreams_transport_std::Writer::dial("192.168.69.1:5034", config).unwrap();
        for i in 0..N {
            w.write(&numbered(i)).unwrap();
        }
        w.close()
    });

    let mut smol_seen = Vec::new();
    let (mut sent, mut writer_cut, mut std_restarted) = (0u64, false, false);
    let (mut listener_cut, mut listener_rebuilt) = (false, false);
    loop {
        assert!(
            started.elapsed() < StdDuration::from_secs(60),
            "stalled: smoltcp writer sent {sent}, {} unacknowledged; smoltcp listener got {}",
            writer.unacknowledged(),
            smol_seen.len()
        );
        let now = Instant::now();
        iface.poll(now, &mut device, &mut sockets);
        writer.poll(iface.context(), &mut sockets, now);
        listener.poll(&mut sockets, now, |m, conn| {
            let d = conn.delivery().unwrap();
            smol_seen.push((index_of(m), d.seq, d.may_repeat));
        });
        while sent < N {
            match writer.write(&mut sockets, &numbered(sent)) {
                Ok(_) => sent += 1,
                Err(SendError::WindowFull) => break,
                Err(e) => panic!("smoltcp write {sent}: {e}"),
            }
        }
        // smoltcp -> std: the writer's connection cut at a third, the listener restarted at
        // two thirds (a new process would forget the session; so does a new Listener).
        let delivered = std_seen.lock().unwrap().len() as u64;
        if !writer_cut && delivered >= N / 3 {
            writer_cut = true;
            sockets.get_mut::<tcp::Socket>(writer_handle).abort();
        }
        if !std_restarted && delivered >= 2 * N / 3 {
            std_restarted = true;
            std_side.take().unwrap().shutdown();
            std_side = Some(record(std_seen.clone()));
        }
        // std -> smoltcp: the listener's connections aborted at a third, its state rebuilt
        // from nothing over the same sockets at two thirds.
        let got = smol_seen.len() as u64;
        if !listener_cut && got >= N / 3 {
            listener_cut = true;
            listener.close(&mut sockets);
        }
        if !listener_rebuilt && got >= 2 * N / 3 {
            listener_rebuilt = true;
            listener.close(&mut sockets);
            listener = smol_listener();
        }
        iface.poll(now, &mut device, &mut sockets);
        if sent == N && writer.is_settled() && std_writer.is_finished() {
            break;
        }
        let delay = iface
            .poll_delay(now, &sockets)
            .unwrap_or(Duration::from_millis(5));
        phy_wait(fd, Some(delay.min(Duration::from_millis(5)))).unwrap();
    }
    let wstats = std_writer.join().unwrap();
    std_side.take().unwrap().shutdown();
    let std_repeats = check_once("smoltcp -> std", &std_seen.lock().unwrap(), N);
    let smol_repeats = check_once("std -> smoltcp", &smol_seen, N);
    assert_eq!((wstats.acked, wstats.dead_lettered), (N, 0), "{wstats:?}");
    let ws = writer.stats();
    assert!(ws.reconnects >= 2 && ws.resent > 0, "{ws:?}");
    println!(
        "acknowledged over TAP, {N} messages each way in {:?}: smoltcp -> std {std_repeats} repeats \
         (all marked), {} reconnects; std -> smoltcp {smol_repeats} repeats (all marked), {} reconnects",
        started.elapsed(),
        ws.reconnects,
        wstats.reconnects
    );
}

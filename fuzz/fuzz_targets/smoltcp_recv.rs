//! The smoltcp listener's receive path over `phy::Loopback`: fuzzer-chosen bytes, receive
//! ring size, decoder storage, header format, limits and segmenting (one send per poll). The
//! listener must hand over exactly the frames of one contiguous feed, in order, end the
//! connection with the same error (or truncation), and never panic or stall.
#![no_main]

use buffstreams_framing::harness::{Out, run};
use buffstreams_framing::{Config, LengthPrefix, Oversize, with_format};
use buffstreams_transport_smoltcp::{Listener, ListenerConfig, Slot};
use libfuzzer_sys::fuzz_target;
use smoltcp::iface::{Config as IfaceConfig, Interface, SocketSet};
use smoltcp::phy::{Loopback, Medium};
use smoltcp::socket::tcp;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{EthernetAddress, IpAddress, IpCidr};

struct Case<'a> {
    config: Config,
    rx: usize,
    storage: usize,
    segments: &'a [u8],
    stream: &'a [u8],
}

fn check<H: LengthPrefix>(case: &Case<'_>) {
    let effective = case.config.max_frame_len().min(case.storage);
    let expected = run::<H>(case.config.with_max_frame_len(effective), case.stream, &[]);

    let mut device = Loopback::new(Medium::Ethernet);
    let mut now = Instant::from_millis(1);
    let mut iface = Interface::new(
        IfaceConfig::new(EthernetAddress([2, 0, 0, 0, 0, 1]).into()),
        &mut device,
        now,
    );
    iface.update_ip_addrs(|a| a.push(IpCidr::new(IpAddress::v4(127, 0, 0, 1), 8)).unwrap());
    let mut sockets = SocketSet::new(vec![]);
    let new_socket = |rx: usize, tx: usize| {
        tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; rx]),
            tcp::SocketBuffer::new(vec![0; tx]),
        )
    };
    let slot = Slot::new(
        sockets.add(new_socket(case.rx, 64)),
        vec![0u8; case.storage].into_boxed_slice(),
        [0u8; 0],
    );
    let mut listener: Listener<H, Box<[u8]>, [u8; 0], 1> = Listener::new(
        ListenerConfig::new(7)
            .with_framing(case.config)
            .with_frame_timeout(None),
        [slot],
    );
    let client = sockets.add(new_socket(64, 4096));

    let mut frames = Vec::new();
    let (mut pos, mut turn, mut dialled, mut closed) = (0usize, 0usize, false, false);
    for _ in 0..50_000 {
        now += Duration::from_millis(1);
        iface.poll(now, &mut device, &mut sockets);
        listener.poll(&mut sockets, now, |msg, _| frames.push(msg.to_vec()));
        let s = sockets.get_mut::<tcp::Socket>(client);
        if !dialled && listener.handle(0).is_some() {
            s.connect(iface.context(), (IpAddress::v4(127, 0, 0, 1), 7), 40000)
                .unwrap();
            dialled = true;
            continue;
        }
        if s.may_send() && pos < case.stream.len() {
            let size = case
                .segments
                .get(turn % case.segments.len().max(1))
                .copied()
                .unwrap_or(255);
            turn += 1;
            let end = (pos + usize::from(size).max(1)).min(case.stream.len());
            pos += s.send_slice(&case.stream[pos..end]).unwrap();
        }
        if pos == case.stream.len() && s.may_send() && !closed {
            s.close();
            closed = true;
        }
        if dialled && !s.is_open() {
            break;
        }
    }
    assert!(
        !sockets.get::<tcp::Socket>(client).is_open(),
        "stalled: {pos} of {} bytes sent",
        case.stream.len()
    );
    // One more round lets the listener notice a reset it caused or a close it completed.
    now += Duration::from_millis(1);
    iface.poll(now, &mut device, &mut sockets);
    listener.poll(&mut sockets, now, |msg, _| frames.push(msg.to_vec()));

    let want: Vec<Vec<u8>> = expected
        .items
        .iter()
        .filter_map(|o| match o {
            Out::Frame(f) => Some(f.clone()),
            Out::Skipped(_) => None,
        })
        .collect();
    let skipped = expected
        .items
        .iter()
        .filter(|o| matches!(o, Out::Skipped(_)))
        .count();
    let stats = listener.stats();
    assert_eq!(frames, want);
    assert_eq!(stats.skipped, skipped as u64);
    assert_eq!(stats.protocol_errors, u64::from(expected.error.is_some()));
    assert_eq!(stats.truncated, u64::from(expected.mid_frame));
}

fuzz_target!(|data: &[u8]| {
    let [sel, knobs, rx, storage, nseg, rest @ ..] = data else {
        return;
    };
    let nseg = usize::from(*nseg % 8).min(rest.len());
    let (segments, stream) = rest.split_at(nseg);
    let stream = &stream[..stream.len().min(4096)];
    let policy = if knobs & 1 == 0 {
        Oversize::Reject
    } else {
        Oversize::Skip
    };
    let max = [0, 3, 64, 300, 4096][usize::from(knobs >> 1) % 5];
    let case = Case {
        config: Config::new().with_max_frame_len(max).with_oversize(policy),
        rx: 16 + usize::from(*rx) * 4,
        storage: [0, 8, 64, 300, 5000][usize::from(*storage) % 5],
        segments,
        stream,
    };
    with_format!(usize::from(*sel), check, &case);
});

//! Firmware for QEMU's mps2-an385 (Cortex-M3) in the acknowledged mode: the LAN9118 on a TAP
//! link (static address 192.168.69.1), buffstreams-transport-smoltcp's `Writer` with a window
//! of 16 KiB, streaming 20,000 numbered messages to a desktop listener at 192.168.69.100:5035
//! (a transport-std acknowledged `Listener`), which the test kills and restarts mid-stream.
//! The firmware redials, re-sends what was not acknowledged, and exits with success once
//! every message is acknowledged; with failure if the writer gives up, on a fault, or after
//! 100 s.
//!
//! Built with the `plain-twin` feature it is the same program without the acknowledged mode
//! (it writes straight into the send ring and does not wait for acknowledgements): the
//! difference between the two images is what the mode costs in flash and RAM.
#![no_std]
#![no_main]

use buffstreams_firmware::{board_init, exit, host_random, now};
use buffstreams_framing::BigEndian;
#[cfg(not(feature = "plain-twin"))]
use buffstreams_framing::acked::{SessionId, Window};
use buffstreams_transport_smoltcp::{RetryPolicy, SendError, Status, Writer, WriterConfig};
use cortex_m_rt::entry;
use cortex_m_semihosting::hprintln;
use panic_semihosting as _;
use smoltcp::iface::{Config as IfaceConfig, Interface, PollResult, SocketSet, SocketStorage};
use smoltcp::socket::tcp;
use smoltcp::time::Duration;
use smoltcp::wire::{EthernetAddress, IpAddress, IpCidr, IpEndpoint};

/// Messages to stream.
const COUNT: u64 = 20_000;
/// Bytes of the window: what stays in flight until acknowledged.
#[cfg(not(feature = "plain-twin"))]
const WINDOW: usize = 16 * 1024;

/// Message `i`: its index, then filler; 16 to 115 bytes.
fn message(i: u64, buf: &mut [u8; 120]) -> &[u8] {
    let len = 16 + (i % 100) as usize;
    buf[..8].copy_from_slice(&i.to_be_bytes());
    for (j, b) in buf[8..len].iter_mut().enumerate() {
        *b = (i as usize + j) as u8;
    }
    &buf[..len]
}

#[entry]
fn main() -> ! {
    let mut device = board_init("acked firmware");
    let mac = device.mac();
    // A new session at every boot: from the host's randomness (a real board: its TRNG).
    let Some(random) = host_random::<16>() else {
        hprintln!("acked firmware: no randomness from the host");
        exit(false)
    };
    let mut config = IfaceConfig::new(EthernetAddress(mac).into());
    config.random_seed = u64::from_le_bytes([
        random[0], random[1], random[2], random[3], random[4], random[5], random[6], random[7],
    ]);
    let mut iface = Interface::new(config, &mut device, now());
    iface.update_ip_addrs(|addrs| {
        let _ = addrs.push(IpCidr::new(IpAddress::v4(192, 168, 69, 1), 24));
    });

    let mut rx_ring = [0u8; 4096];
    let mut tx_ring = [0u8; 8192];
    let mut storage: [SocketStorage; 1] = Default::default();
    let mut sockets = SocketSet::new(&mut storage[..]);
    let mut socket = tcp::Socket::new(
        tcp::SocketBuffer::new(&mut rx_ring[..]),
        tcp::SocketBuffer::new(&mut tx_ring[..]),
    );
    socket.set_ack_delay(None);
    let handle = sockets.add(socket);
    let server = IpEndpoint::new(IpAddress::v4(192, 168, 69, 100), 5035);
    let retry = RetryPolicy::new()
        .with_initial_backoff(Duration::from_millis(50))
        .with_max_backoff(Duration::from_millis(500))
        .with_max_attempts(Some(200));
    let config = WriterConfig::new()
        .with_retry(retry)
        .with_ack_timeout(Duration::from_secs(5))
        .with_seed(u32::from_le_bytes([
            random[8], random[9], random[10], random[11],
        ]));
    let writer = Writer::<BigEndian<4>, _>::new(handle, server, config, [0u8; 32]);
    #[cfg(not(feature = "plain-twin"))]
    let mut writer = writer.with_acks(
        Window::new([0u8; WINDOW], usize::MAX, 1024),
        SessionId(random),
    );
    #[cfg(feature = "plain-twin")]
    let mut writer = writer;

    let mut buf = [0u8; 120];
    let mut sent = 0u64;
    let start = now();
    let deadline = start + Duration::from_secs(100);
    loop {
        let t = now();
        if t > deadline {
            hprintln!(
                "acked firmware: timed out: {} written, {} unacknowledged",
                sent,
                writer.unacknowledged()
            );
            exit(false)
        }
        let activity = iface.poll(t, &mut device, &mut sockets);
        if writer.poll(iface.context(), &mut sockets, t) == Status::GaveUp {
            hprintln!("acked firmware: the writer gave up");
            exit(false)
        }
        let before = sent;
        while sent < COUNT {
            match writer.write(&mut sockets, message(sent, &mut buf)) {
                Ok(_) => sent += 1,
                Err(SendError::WindowFull | SendError::Full { .. } | SendError::NotConnected) => {
                    break;
                }
                Err(e) => {
                    hprintln!("acked firmware: write {}: {}", sent, e);
                    exit(false)
                }
            }
        }
        if sent == COUNT && writer.is_settled() {
            break;
        }
        if activity == PollResult::None && before == sent {
            cortex_m::asm::wfi();
        }
    }
    let ms = (now() - start).total_millis().max(1);
    let st = writer.stats();
    hprintln!(
        "acked firmware: {} messages acknowledged in {} ms ({} messages/s emulated): \
         {} reconnects, {} re-sent",
        COUNT,
        ms,
        COUNT * 1000 / ms,
        st.reconnects,
        st.resent
    );
    hprintln!(
        "acked firmware: RAM held by buffstreams: Writer {} B (the window included)",
        core::mem::size_of_val(&writer)
    );
    writer.close(&mut sockets);
    let until = now() + Duration::from_secs(2);
    while now() < until && sockets.get::<tcp::Socket>(handle).is_open() {
        iface.poll(now(), &mut device, &mut sockets);
    }
    exit(true)
}

//! Firmware for QEMU's mps2-an385 (Cortex-M3): brings up the LAN9118 and smoltcp, dials the
//! desktop server at 10.0.2.100:5555 (QEMU forwards it to a transport-std listener on the
//! host) with buffstreams-transport-smoltcp's `Writer`, streams numbered messages of 0 to 1000
//! bytes and checks every echoed reply byte for byte. Exit status through semihosting: 0 when
//! every reply came back right, 1 on the first wrong one, on a fault, or after 60 s.
//!
//! The wiring is what a firmware author writes for their own board: a `phy::Device`, an
//! `Interface`, a `SocketSet` over static storage, and one poll loop that drives the stack,
//! then the writer, then the application.
#![no_std]
#![no_main]

use buffstreams_firmware::{board_init, exit, now};
use buffstreams_framing::{BigEndian, Config};
use buffstreams_transport_smoltcp::{SendError, Writer, WriterConfig};
use cortex_m_rt::entry;
use cortex_m_semihosting::hprintln;
use panic_semihosting as _;
use smoltcp::iface::{Config as IfaceConfig, Interface, PollResult, SocketSet, SocketStorage};
use smoltcp::socket::tcp;
use smoltcp::time::Duration;
use smoltcp::wire::{EthernetAddress, IpAddress, IpCidr, IpEndpoint, Ipv4Address};

/// Messages to stream and check.
const COUNT: u32 = 10_000;
/// Largest message, and the framing maximum on both sides.
const MAX: usize = 1000;

/// Message `i`: its length and bytes depend on `i` only, so every reply can be checked.
fn message(i: u32, buf: &mut [u8; MAX]) -> &[u8] {
    let len = (i as usize).wrapping_mul(7919) % (MAX + 1);
    for (j, b) in buf[..len].iter_mut().enumerate() {
        *b = (i as usize * 31 + j * 7) as u8;
    }
    &buf[..len]
}

#[entry]
fn main() -> ! {
    let mut device = board_init("firmware");
    let mac = device.mac();
    hprintln!(
        "firmware: LAN9118 id {:#010x}, MAC {:02x?}",
        device.id(),
        mac
    );

    let mut config = IfaceConfig::new(EthernetAddress(mac).into());
    config.random_seed = u64::from(u32::from_le_bytes([mac[2], mac[3], mac[4], mac[5]]));
    let mut iface = Interface::new(config, &mut device, now());
    iface.update_ip_addrs(|addrs| {
        let _ = addrs.push(IpCidr::new(IpAddress::v4(10, 0, 2, 15), 24));
    });
    let _ = iface
        .routes_mut()
        .add_default_ipv4_route(Ipv4Address::new(10, 0, 2, 2));

    // Socket buffers live on main's stack, which never returns: no heap, no statics to unsafe.
    let mut rx_ring = [0u8; 8192];
    let mut tx_ring = [0u8; 8192];
    let (rx_len, tx_len) = (rx_ring.len(), tx_ring.len());
    let mut storage: [SocketStorage; 1] = Default::default();
    let mut sockets = SocketSet::new(&mut storage[..]);
    let mut socket = tcp::Socket::new(
        tcp::SocketBuffer::new(&mut rx_ring[..]),
        tcp::SocketBuffer::new(&mut tx_ring[..]),
    );
    // Acknowledge at once: the peer (QEMU's slirp) paces its sending on our ACKs.
    socket.set_ack_delay(None);
    let handle = sockets.add(socket);
    let server = IpEndpoint::new(IpAddress::v4(10, 0, 2, 100), 5555);
    let framing = Config::new().with_max_frame_len(MAX);
    let seed = u32::from_le_bytes([mac[5], mac[4], mac[3], 0x5a]);
    let mut writer = Writer::<BigEndian<4>, _>::new(
        handle,
        server,
        WriterConfig::new().with_framing(framing).with_seed(seed),
        [0u8; MAX],
    );

    let mut out = [0u8; MAX];
    let mut expect = [0u8; MAX];
    let (mut sent, mut echoed, mut wrong) = (0u32, 0u32, None);
    let start = now();
    let mut connected_at = None;
    let deadline = start + Duration::from_secs(60);
    while echoed < COUNT && wrong.is_none() {
        let t = now();
        if t > deadline {
            hprintln!(
                "firmware: timed out: sent {}, echoed {} of {}",
                sent,
                echoed,
                COUNT
            );
            exit(false)
        }
        let activity = iface.poll(t, &mut device, &mut sockets);
        writer.poll(iface.context(), &mut sockets, t);
        let before = (sent, echoed);
        if connected_at.is_none() && writer.is_connected() {
            connected_at = Some(t);
        }
        while sent < COUNT {
            match writer.write(&mut sockets, message(sent, &mut out)) {
                Ok(_) => sent += 1,
                Err(SendError::Full { .. } | SendError::NotConnected) => break,
                Err(e) => {
                    hprintln!("firmware: write {}: {}", sent, e);
                    exit(false)
                }
            }
        }
        let received = writer.receive(&mut sockets, |reply| {
            if wrong.is_none() && reply != message(echoed, &mut expect) {
                wrong = Some(echoed);
            }
            echoed += 1;
        });
        if let Err(e) = received {
            hprintln!("firmware: reply stream broken: {}", e);
            exit(false)
        }
        if activity == PollResult::None && before == (sent, echoed) {
            // Nothing to do until a frame arrives or a timer fires: sleep to the next tick
            // (on QEMU this also lets the emulator's network backend run).
            cortex_m::asm::wfi();
        }
    }
    if let Some(i) = wrong {
        hprintln!("firmware: reply {} differs from message {}", i, i);
        exit(false)
    }
    let end = now();
    let streaming = (end - connected_at.unwrap_or(start)).total_millis().max(1);
    let st = writer.stats();
    hprintln!(
        "firmware: {} messages echoed and checked in {} ms: {} messages/s each way (emulated Cortex-M3)",
        echoed,
        streaming,
        u64::from(echoed) * 1000 / streaming
    );
    hprintln!(
        "firmware: writer stats: out {} ({} B), in {} ({} B), ring full {}, reconnects {}, rx errors {}",
        st.messages_out,
        st.bytes_out,
        st.replies,
        st.reply_bytes,
        st.full,
        st.reconnects,
        device.rx_errors()
    );
    hprintln!(
        "firmware: RAM held by buffstreams: Writer {} B (its reply storage included), socket rings {} B",
        core::mem::size_of_val(&writer),
        rx_len + tx_len
    );
    // Close gracefully: the FIN follows the last bytes; wait (bounded) for the close to finish.
    writer.close(&mut sockets);
    let until = now() + Duration::from_secs(2);
    while now() < until && sockets.get::<tcp::Socket>(handle).is_open() {
        iface.poll(now(), &mut device, &mut sockets);
    }
    exit(true)
}

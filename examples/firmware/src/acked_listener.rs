//! Firmware for QEMU's mps2-an385 (Cortex-M3): an acknowledged listener a desktop writer
//! dials. The LAN9118 is on a TAP link (static address 192.168.69.1); buffstreams-
//! transport-smoltcp's `Listener` with a session table serves port 5036. It checks that
//! message `i` (its index in its first 8 bytes, as the `client` program sends them) arrives
//! numbered `i + 1`, once, in order; aborts every connection once after 5,000 messages (the
//! writer reconnects and resumes where the welcome says); and exits with success once 20,000
//! have arrived and the writer has closed (so its last acknowledgements went out). Failure on
//! the first wrong message, on a fault, or after 100 s.
#![no_std]
#![no_main]

use buffstreams_firmware::{board_init, exit, now};
use buffstreams_framing::BigEndian;
use buffstreams_framing::acked::SessionSlot;
use buffstreams_transport_smoltcp::{Listener, ListenerConfig, Slot};
use cortex_m_rt::entry;
use cortex_m_semihosting::hprintln;
use panic_semihosting as _;
use smoltcp::iface::{Config as IfaceConfig, Interface, PollResult, SocketSet, SocketStorage};
use smoltcp::socket::tcp;
use smoltcp::time::Duration;
use smoltcp::wire::{EthernetAddress, IpAddress, IpCidr};

/// Messages the desktop writer sends.
const COUNT: u64 = 20_000;
/// Where every connection is aborted once.
const CUT_AT: u64 = 5_000;

#[entry]
fn main() -> ! {
    let mut device = board_init("acked listener");
    let mac = device.mac();
    let mut config = IfaceConfig::new(EthernetAddress(mac).into());
    config.random_seed = u64::from(u32::from_le_bytes([mac[2], mac[3], mac[4], mac[5]]));
    let mut iface = Interface::new(config, &mut device, now());
    iface.update_ip_addrs(|addrs| {
        let _ = addrs.push(IpCidr::new(IpAddress::v4(192, 168, 69, 1), 24));
    });

    // Two slots: a writer's new connection may arrive before its old one is gone. The rings
    // live on main's stack, which never returns.
    let (mut rx_a, mut tx_a) = ([0u8; 8192], [0u8; 1024]);
    let (mut rx_b, mut tx_b) = ([0u8; 8192], [0u8; 1024]);
    let mut storage: [SocketStorage; 2] = Default::default();
    let mut sockets = SocketSet::new(&mut storage[..]);
    let mut socket_a = tcp::Socket::new(
        tcp::SocketBuffer::new(&mut rx_a[..]),
        tcp::SocketBuffer::new(&mut tx_a[..]),
    );
    let mut socket_b = tcp::Socket::new(
        tcp::SocketBuffer::new(&mut rx_b[..]),
        tcp::SocketBuffer::new(&mut tx_b[..]),
    );
    socket_a.set_ack_delay(None);
    socket_b.set_ack_delay(None);
    let handles = [sockets.add(socket_a), sockets.add(socket_b)];
    let slots = handles.map(|h| Slot::new(h, [0u8; 256], [0u8; 64]));
    let mut listener = Listener::<BigEndian<4>, _, _, 2>::new(ListenerConfig::new(5036), slots)
        .with_acks([SessionSlot::EMPTY; 4]);

    let (mut delivered, mut cut, mut wrong) = (0u64, false, None);
    let start = now();
    let deadline = start + Duration::from_secs(100);
    loop {
        let t = now();
        if t > deadline {
            hprintln!("acked listener: timed out after {} messages", delivered);
            exit(false)
        }
        let activity = iface.poll(t, &mut device, &mut sockets);
        let before = delivered;
        listener.poll(&mut sockets, t, |msg, conn| {
            let index = msg
                .get(..8)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_be_bytes);
            let ok = conn.delivery().is_some_and(|d| {
                d.seq == delivered + 1 && index == Some(delivered) && !d.may_repeat
            });
            if !ok && wrong.is_none() {
                wrong = Some((delivered, index, conn.delivery()));
            }
            delivered += 1;
        });
        if let Some((at, index, delivery)) = wrong {
            hprintln!(
                "acked listener: message {} wrong: index {:?}, {:?}",
                at,
                index,
                delivery
            );
            exit(false)
        }
        if !cut && delivered >= CUT_AT {
            cut = true;
            // Every connection reset; the sessions stay known.
            listener.close(&mut sockets);
        }
        let served = (0..2).any(|i| listener.is_connected(i));
        if delivered == COUNT && !served {
            break;
        }
        if activity == PollResult::None && before == delivered {
            cortex_m::asm::wfi();
        }
    }
    let ms = (now() - start).total_millis().max(1);
    let st = listener.stats();
    hprintln!(
        "acked listener: {} messages checked in {} ms: {} connections, {} acknowledgements, {} handshake errors",
        delivered,
        ms,
        st.connections_total,
        st.acks_out,
        st.handshake_errors
    );
    exit(true)
}

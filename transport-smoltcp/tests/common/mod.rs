//! One smoltcp `Interface` on `phy::Loopback` with a simulated clock: both ends of every
//! connection live in one socket set, so a test is deterministic and needs no root.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test support"
)]

use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{Loopback, Medium};
use smoltcp::socket::tcp;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{EthernetAddress, IpAddress, IpCidr, IpEndpoint};

pub const PORT: u16 = 5031;

pub fn server() -> IpEndpoint {
    IpEndpoint::new(IpAddress::v4(127, 0, 0, 1), PORT)
}

pub struct Net {
    pub iface: Interface,
    pub device: Loopback,
    pub sockets: SocketSet<'static>,
    pub now: Instant,
    pub step: Duration,
}

impl Net {
    pub fn new() -> Self {
        let mut device = Loopback::new(Medium::Ethernet);
        let config = Config::new(EthernetAddress([0x02, 0, 0, 0, 0, 1]).into());
        let now = Instant::from_millis(1000);
        let mut iface = Interface::new(config, &mut device, now);
        iface.update_ip_addrs(|a| a.push(IpCidr::new(IpAddress::v4(127, 0, 0, 1), 8)).unwrap());
        Self {
            iface,
            device,
            sockets: SocketSet::new(vec![]),
            now,
            step: Duration::from_millis(1),
        }
    }

    pub fn tcp(&mut self, rx: usize, tx: usize) -> SocketHandle {
        let socket = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; rx]),
            tcp::SocketBuffer::new(vec![0; tx]),
        );
        self.sockets.add(socket)
    }

    /// Advances the clock one step and lets the stack move packets.
    pub fn poll(&mut self) {
        self.now += self.step;
        self.iface
            .poll(self.now, &mut self.device, &mut self.sockets);
    }

    pub fn socket(&mut self, h: SocketHandle) -> &mut tcp::Socket<'static> {
        self.sockets.get_mut::<tcp::Socket>(h)
    }

    /// A raw client socket dialling the listener (a hostile or hand-driven peer).
    pub fn dial_raw(&mut self, h: SocketHandle, local_port: u16) {
        let cx = self.iface.context();
        self.sockets
            .get_mut::<tcp::Socket>(h)
            .connect(cx, server(), local_port)
            .unwrap();
    }
}

/// The payload of message `i` of a test stream: its length and bytes depend on `i` only.
pub fn payload(i: usize, max: usize) -> Vec<u8> {
    let len = (i.wrapping_mul(7919) ^ (i >> 3)) % (max + 1);
    (0..len)
        .map(|j| (i.wrapping_mul(31) ^ j.wrapping_mul(7)) as u8)
        .collect()
}

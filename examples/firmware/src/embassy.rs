//! The firmware's async twin: the same board (QEMU's mps2-an385, the same LAN9118 driver)
//! on embassy's executor and embassy-net, streaming to the desktop server at 10.0.2.100:5555
//! with the framing crate's `AsyncFrameWriter` over an embassy-net `TcpSocket` (the
//! `buffstreams-embassy-example` library's `send_to`). Exit status through semihosting: 0 once
//! the server has acknowledged every message and the close, 1 on an error, a fault, or after
//! 60 s.
//!
//! What a board needs besides its network driver (a time driver, the executor's loop) is in
//! `embassy_rt.rs`, shared with the TLS image.
#![no_std]
#![no_main]

use buffstreams_embassy_example::send_to;
use buffstreams_firmware::{board_init, exit, millis};
use cortex_m_rt::entry;
use embassy_net::{Ipv4Address, Ipv4Cidr, Stack, StackResources, StaticConfigV4};
use panic_semihosting as _;
use static_cell::StaticCell;

#[path = "embassy_rt.rs"]
mod rt;

/// Messages to stream.
const COUNT: u32 = 2000;
/// The run fails after this long.
const DEADLINE_MS: u32 = 60_000;

#[embassy_executor::task]
async fn app(stack: Stack<'static>) {
    static RX: StaticCell<[u8; 8192]> = StaticCell::new();
    static TX: StaticCell<[u8; 8192]> = StaticCell::new();
    let (rx, tx) = (RX.init([0; 8192]), TX.init([0; 8192]));
    stack.wait_config_up().await;
    let start = millis();
    let server = (Ipv4Address::new(10, 0, 2, 100), 5555);
    let sent = send_to(stack, server, rx, tx, COUNT).await;
    rt::report("embassy firmware", "", COUNT, start, &sent);
}

#[entry]
fn main() -> ! {
    let device = board_init("embassy firmware");
    let mac = device.mac();
    let config = embassy_net::Config::ipv4_static(StaticConfigV4 {
        address: Ipv4Cidr::new(Ipv4Address::new(10, 0, 2, 15), 24),
        gateway: Some(Ipv4Address::new(10, 0, 2, 2)),
        dns_servers: Default::default(),
    });
    static RESOURCES: StaticCell<StackResources<2>> = StaticCell::new();
    let seed = u64::from(u32::from_le_bytes([mac[2], mac[3], mac[4], mac[5]]));
    let (stack, runner) =
        embassy_net::new(device, config, RESOURCES.init(StackResources::new()), seed);
    rt::run("embassy firmware", DEADLINE_MS, |spawner| {
        match (rt::net_task(runner), app(stack)) {
            (Ok(net), Ok(app)) => {
                spawner.spawn(net);
                spawner.spawn(app);
            }
            _ => exit(false),
        }
    })
}

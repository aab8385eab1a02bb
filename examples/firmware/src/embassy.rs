//! The firmware's async twin: the same board (QEMU's mps2-an385, the same LAN9118 driver)
//! on embassy's executor and embassy-net, streaming to the desktop server at 10.0.2.100:5555
//! with the framing crate's `AsyncFrameWriter` over an embassy-net `TcpSocket` (the
//! `buffstreams-embassy-example` library's `send_to`). Exit status through semihosting: 0 once
//! the server has acknowledged every message and the close, 1 on an error, a fault, or after
//! 60 s.
//!
//! What a board needs besides its network driver, all in this file: a time driver for
//! embassy-time (here on the 1 ms SysTick, with embassy's generic timer queue), and a loop
//! that runs embassy's executor and sleeps when nothing is ready (`wfi`). This driver has no
//! receive interrupt, so the loop wakes the network stack on every tick.
#![no_std]
#![no_main]

use core::cell::RefCell;
use core::sync::atomic::{AtomicBool, Ordering};
use core::task::Waker;

use buffstreams_embassy_example::send_to;
use buffstreams_firmware::lan9118::{self, Lan9118};
use buffstreams_firmware::{board_init, exit, millis};
use cortex_m_rt::entry;
use cortex_m_semihosting::hprintln;
use critical_section::Mutex;
use embassy_executor::raw::Executor;
use embassy_net::{Ipv4Address, Ipv4Cidr, Runner, Stack, StackResources, StaticConfigV4};
use embassy_time_queue_utils::Queue;
use panic_semihosting as _;
use static_cell::StaticCell;

/// Messages to stream.
const COUNT: u32 = 2000;
/// The run fails after this long.
const DEADLINE_MS: u32 = 60_000;

/// embassy-time's clock: SysTick's milliseconds, and the timers waiting on them.
struct Clock {
    timers: Mutex<RefCell<Queue>>,
}

impl embassy_time_driver::Driver for Clock {
    fn now(&self) -> u64 {
        u64::from(millis())
    }

    fn schedule_wake(&self, at: u64, waker: &Waker) {
        critical_section::with(|cs| {
            self.timers.borrow(cs).borrow_mut().schedule_wake(at, waker);
        });
    }
}

embassy_time_driver::time_driver_impl!(static CLOCK: Clock = Clock {
    timers: Mutex::new(RefCell::new(Queue::new())),
});

/// A task was woken: poll the executor before sleeping.
static PENDING: AtomicBool = AtomicBool::new(true);

// SAFETY: the executor calls its pender, which must have exactly this name and signature.
#[unsafe(export_name = "__pender")]
fn pender(_context: *mut ()) {
    PENDING.store(true, Ordering::Release);
}

/// How the application task ended.
static RESULT: Mutex<RefCell<Option<bool>>> = Mutex::new(RefCell::new(None));

#[embassy_executor::task]
async fn net_task(mut runner: Runner<'static, Lan9118>) -> ! {
    runner.run().await
}

#[embassy_executor::task]
async fn app(stack: Stack<'static>) {
    static RX: StaticCell<[u8; 8192]> = StaticCell::new();
    static TX: StaticCell<[u8; 8192]> = StaticCell::new();
    let (rx, tx) = (RX.init([0; 8192]), TX.init([0; 8192]));
    stack.wait_config_up().await;
    let start = millis();
    let server = (Ipv4Address::new(10, 0, 2, 100), 5555);
    let sent = send_to(stack, server, rx, tx, COUNT).await;
    let ms = millis().wrapping_sub(start).max(1);
    match &sent {
        Ok(()) => hprintln!(
            "embassy firmware: {} messages sent and acknowledged in {} ms: {} messages/s (emulated Cortex-M3)",
            COUNT,
            ms,
            u64::from(COUNT) * 1000 / u64::from(ms)
        ),
        Err(e) => hprintln!("embassy firmware: {:?}", e),
    }
    critical_section::with(|cs| *RESULT.borrow(cs).borrow_mut() = Some(sent.is_ok()));
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

    static EXECUTOR: StaticCell<Executor> = StaticCell::new();
    let executor: &'static Executor = EXECUTOR.init(Executor::new(core::ptr::null_mut()));
    let spawner = executor.spawner();
    match (net_task(runner), app(stack)) {
        (Ok(net), Ok(app)) => {
            spawner.spawn(net);
            spawner.spawn(app);
        }
        _ => exit(false),
    }
    let mut tick = millis();
    loop {
        if PENDING.swap(false, Ordering::AcqRel) {
            // SAFETY: polled from this one thread only, never re-entered.
            unsafe { executor.poll() };
        }
        if let Some(ok) = critical_section::with(|cs| *RESULT.borrow(cs).borrow()) {
            exit(ok);
        }
        let now = millis();
        if now != tick {
            tick = now;
            if now > DEADLINE_MS {
                hprintln!("embassy firmware: timed out");
                exit(false);
            }
            lan9118::wake_receiver();
            critical_section::with(|cs| {
                CLOCK
                    .timers
                    .borrow(cs)
                    .borrow_mut()
                    .next_expiration(u64::from(now));
            });
        }
        if !PENDING.load(Ordering::Acquire) {
            // Until the next tick (or any interrupt); on QEMU this also lets the network
            // backend run.
            cortex_m::asm::wfi();
        }
    }
}

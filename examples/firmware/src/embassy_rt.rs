//! What an embassy program needs on this board besides its network driver, shared by the
//! `embassy` and `embassy_tls` images (each includes this file): a time driver for
//! embassy-time (the 1 ms SysTick, with embassy's generic timer queue), the network stack's
//! task, and a loop that runs embassy's executor and sleeps when nothing is ready (`wfi`). The
//! LAN9118 driver has no receive interrupt, so the loop wakes the network stack on every tick.

use core::cell::RefCell;
use core::sync::atomic::{AtomicBool, Ordering};
use core::task::Waker;

use buffstreams_firmware::lan9118::{self, Lan9118};
use buffstreams_firmware::{exit, millis};
use cortex_m_semihosting::hprintln;
use critical_section::Mutex;
use embassy_executor::{Spawner, raw::Executor};
use embassy_net::Runner;
use embassy_time_queue_utils::Queue;
use static_cell::StaticCell;

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

/// The application's end: the program exits with `ok`'s status.
pub fn finish(ok: bool) {
    critical_section::with(|cs| *RESULT.borrow(cs).borrow_mut() = Some(ok));
}

/// The application's end after sending `count` messages from `start` (its `millis`): says how
/// it went under `program`'s name (`how`: how they went, such as " over TLS") and
/// [`finish`]es with its status.
pub fn report<E: core::fmt::Debug>(
    program: &str,
    how: &str,
    count: u32,
    start: u32,
    sent: &Result<(), E>,
) {
    let ms = millis().wrapping_sub(start).max(1);
    match sent {
        Ok(()) => hprintln!(
            "{}: {} messages sent{} and acknowledged in {} ms: {} messages/s (emulated Cortex-M3)",
            program,
            count,
            how,
            ms,
            u64::from(count) * 1000 / u64::from(ms)
        ),
        Err(e) => hprintln!("{}: {:?}", program, e),
    }
    finish(sent.is_ok());
}

#[embassy_executor::task]
pub async fn net_task(mut runner: Runner<'static, Lan9118>) -> ! {
    runner.run().await
}

/// Runs the executor: `start` spawns the tasks; exits when the application calls [`finish`],
/// or with failure after `deadline_ms` (saying so under `program`'s name).
pub fn run(program: &str, deadline_ms: u32, start: impl FnOnce(Spawner)) -> ! {
    static EXECUTOR: StaticCell<Executor> = StaticCell::new();
    let executor: &'static Executor = EXECUTOR.init(Executor::new(core::ptr::null_mut()));
    start(executor.spawner());
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
            if now > deadline_ms {
                hprintln!("{}: timed out", program);
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

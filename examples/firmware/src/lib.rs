//! Board support for the firmware on QEMU's mps2-an385 (Cortex-M3): a millisecond clock on
//! SysTick, a polled LAN9118 Ethernet driver for smoltcp, and exit through semihosting (a
//! fault exits with failure instead of hanging).
#![no_std]

pub mod lan9118;

use core::sync::atomic::{AtomicU32, Ordering};

use cortex_m::peripheral::SYST;
use cortex_m::peripheral::syst::SystClkSource;
use cortex_m_rt::{ExceptionFrame, exception};
use cortex_m_semihosting::{debug, hprintln};
use smoltcp::time::Instant;

/// The board's system clock (QEMU's mps2-an385 runs its Cortex-M3 at 25 MHz).
pub const SYSCLK_HZ: u32 = 25_000_000;

static MILLIS: AtomicU32 = AtomicU32::new(0);

/// Starts a 1 ms SysTick; [`now`] reads it.
pub fn clock_init(mut syst: SYST) {
    syst.set_clock_source(SystClkSource::Core);
    syst.set_reload(SYSCLK_HZ / 1000 - 1);
    syst.clear_current();
    syst.enable_counter();
    syst.enable_interrupt();
}

/// Milliseconds since [`clock_init`] (wraps after 49 days).
pub fn millis() -> u32 {
    MILLIS.load(Ordering::Relaxed)
}

/// Milliseconds since [`clock_init`], as smoltcp's clock.
pub fn now() -> Instant {
    Instant::from_millis(i64::from(MILLIS.load(Ordering::Relaxed)))
}

#[exception]
fn SysTick() {
    MILLIS.fetch_add(1, Ordering::Relaxed);
}

#[exception]
unsafe fn HardFault(frame: &ExceptionFrame) -> ! {
    hprintln!("firmware: HardFault at pc {:#010x}", frame.pc());
    exit(false)
}

/// Ends the emulation with success or failure (QEMU's exit status).
pub fn exit(success: bool) -> ! {
    debug::exit(if success {
        debug::EXIT_SUCCESS
    } else {
        debug::EXIT_FAILURE
    });
    // Only reached without a semihosting host.
    loop {
        cortex_m::asm::wfi();
    }
}

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

/// Brings the board up once per program: takes the core peripherals, starts the clock
/// ([`clock_init`]) and opens the LAN9118. A second call, or a board without the chip, prints
/// why under `program`'s name and exits with failure.
pub fn board_init(program: &str) -> lan9118::Lan9118 {
    let Some(cp) = cortex_m::Peripherals::take() else {
        hprintln!("{}: the board was already brought up", program);
        exit(false)
    };
    clock_init(cp.SYST);
    // SAFETY: 0x4020_0000 is the mps2-an385's LAN9118, used by nothing else; `take` above
    // succeeds once per program, so this is its only driver.
    match unsafe { lan9118::Lan9118::new(lan9118::BASE) } {
        Ok(device) => device,
        Err(e) => {
            hprintln!("{}: no LAN9118: {:?}", program, e);
            exit(false)
        }
    }
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

/// `N` random bytes from the host, through semihosting (QEMU reads its `/dev/urandom`): the
/// emulated board has no random number generator. Real hardware reads its TRNG instead
/// (or, lacking one, mixes an unique id with a boot counter kept in flash). `None` when the
/// host refuses.
pub fn host_random<const N: usize>() -> Option<[u8; N]> {
    use cortex_m_semihosting::nr;
    let path = b"/dev/urandom\0";
    let mut out = [0u8; N];
    // SAFETY: semihosting calls with the arguments the ARM semihosting specification gives
    // them: a NUL-terminated path and its length without the NUL, then a buffer we own and
    // its length. The host writes at most `out.len()` bytes into `out`.
    unsafe {
        let fd = cortex_m_semihosting::syscall(
            nr::OPEN,
            &[path.as_ptr() as usize, nr::open::R_BINARY, path.len() - 1],
        ) as isize;
        if fd < 0 {
            return None;
        }
        let left = cortex_m_semihosting::syscall(
            nr::READ,
            &[fd as usize, out.as_mut_ptr() as usize, out.len()],
        );
        cortex_m_semihosting::syscall(nr::CLOSE, &[fd as usize]);
        (left == 0).then_some(out)
    }
}

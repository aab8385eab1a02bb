//! Exercises a BigEndian<4> decoder and encoder without std or an allocator.
#![no_std]
#![no_main]

#[cfg(feature = "alloc-control")]
extern crate alloc;

use buffstreams_framing::{BigEndian, Config, Decoder, Encoder, Event};
use core::hint::black_box;

/// Encodes two frames, decodes them fed in 3-byte pieces, and checks them.
fn run() -> bool {
    let enc = Encoder::<BigEndian<4>>::new(Config::new().with_max_frame_len(256));
    let mut wire = [0u8; 64];
    let Ok(a) = enc.encode(black_box(b"hello"), &mut wire) else {
        return false;
    };
    let Ok(b) = enc.encode(black_box(b"bare metal"), &mut wire[a..]) else {
        return false;
    };
    let mut dec =
        Decoder::<BigEndian<4>, _>::new(Config::new().with_max_frame_len(256), [0u8; 256]);
    let mut seen = 0u32;
    for mut piece in black_box(&wire[..a + b]).chunks(3) {
        while !piece.is_empty() {
            let Ok(fed) = dec.feed(piece) else {
                return false;
            };
            if let Some(Event::Frame(f)) = fed.event {
                let want: &[u8] = if seen == 0 { b"hello" } else { b"bare metal" };
                if f != want {
                    return false;
                }
                seen += 1;
            }
            piece = &piece[fed.consumed..];
        }
    }
    #[cfg(feature = "alloc-control")]
    black_box(alloc::vec![1u8]);
    seen == 2
}

#[cfg(not(target_os = "none"))]
mod host {
    #[link(name = "c")]
    unsafe extern "C" {
        fn write(fd: i32, buf: *const u8, len: usize) -> isize;
        fn _exit(code: i32) -> !;
    }

    fn say(msg: &[u8]) {
        // SAFETY: `msg` is a valid slice for the duration of the call; fd 1 is stdout.
        unsafe { write(1, msg.as_ptr(), msg.len()) };
    }

    #[unsafe(no_mangle)]
    extern "C" fn main(_argc: i32, _argv: *const *const u8) -> i32 {
        if super::run() {
            say(b"nostd-check: framing ran without std or an allocator\n");
            0
        } else {
            say(b"nostd-check: FAILED\n");
            1
        }
    }

    #[panic_handler]
    fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
        say(b"nostd-check: panicked\n");
        // SAFETY: `_exit` ends the process; nothing runs after it.
        unsafe { _exit(101) }
    }
}

#[cfg(target_os = "none")]
mod bare {
    /// Entry point for the size measurement image; the result is kept observable.
    #[unsafe(no_mangle)]
    extern "C" fn _start() -> ! {
        let ok = super::run();
        loop {
            core::hint::black_box(ok);
        }
    }

    #[panic_handler]
    fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
        loop {}
    }
}

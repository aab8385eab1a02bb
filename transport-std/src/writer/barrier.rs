//! The asymmetric fence pair that lets producers publish without a barrier of their own.
//!
//! The flusher sets a lane's `wake_me` and then calls [`heavy`]; a producer stores
//! `committed` and calls [`Lane::take_wake_request`](super::lane::Lane::take_wake_request),
//! which fences and loads `wake_me`. With Linux `membarrier` (private expedited), `heavy` runs
//! a full barrier on every CPU running a thread of this process, so either the flusher's
//! re-check sees the message or the producer sees `wake_me`; the producer's fence is then only
//! a compiler fence. Elsewhere, and under loom and Miri, both are `SeqCst` fences.

use std::sync::atomic::{AtomicU8, Ordering};

use super::sync::fence;

const UNKNOWN: u8 = 0;
const MEMBARRIER: u8 = 1;
const FENCE: u8 = 2;
static MODE: AtomicU8 = AtomicU8::new(UNKNOWN);

#[cfg(all(target_os = "linux", not(loom), not(miri)))]
fn membarrier(cmd: rustix::thread::MembarrierCommand) -> bool {
    rustix::thread::membarrier(cmd).is_ok()
}

/// Chooses the mode once per process, before the first producer runs.
pub(crate) fn init() {
    if MODE.load(Ordering::Acquire) != UNKNOWN {
        return;
    }
    // The model checker and Miri check the portable pair: a fence on both sides.
    #[cfg(all(target_os = "linux", not(loom), not(miri)))]
    let mode = if membarrier(rustix::thread::MembarrierCommand::RegisterPrivateExpedited) {
        MEMBARRIER
    } else {
        FENCE
    };
    #[cfg(not(all(target_os = "linux", not(loom), not(miri))))]
    let mode = FENCE;
    // Two writers dialling at once both register; either result is the same.
    let _ = MODE.compare_exchange(UNKNOWN, mode, Ordering::AcqRel, Ordering::Acquire);
    log::debug!(
        "writer: producers publish with {}",
        if MODE.load(Ordering::Acquire) == MEMBARRIER {
            "membarrier (no per-message fence)"
        } else {
            "a fence per message"
        }
    );
}

/// Whether producers may skip their fence ([`Lane::take_wake_request`](super::lane::Lane::take_wake_request) is the light side):
/// decided by [`init`], before the first lane exists.
pub(crate) fn asymmetric() -> bool {
    MODE.load(Ordering::Acquire) == MEMBARRIER
}

/// Flusher side, between setting `wake_me` and re-checking the lanes. Returns `false` if
/// the producers' stores could not be forced out (the flusher then parks with a timeout).
pub(crate) fn heavy() -> bool {
    fence(Ordering::SeqCst);
    #[cfg(all(target_os = "linux", not(loom), not(miri)))]
    if MODE.load(Ordering::Relaxed) == MEMBARRIER {
        return membarrier(rustix::thread::MembarrierCommand::PrivateExpedited);
    }
    true
}

//! What the writer hands to user code only once it holds no lock: log lines, and messages
//! that could not be delivered (to the dead-letter callback or queue).

use std::cell::Cell;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};

use buffstreams_framing::{Frames, LengthPrefix};

use super::Shared;
use crate::stats::add;
use crate::sync::relock;

impl<H: LengthPrefix> Shared<H> {
    /// Queues a log line for [`deliver_deferred`](Self::deliver_deferred): this runs with the
    /// connection locked and, inside a writing thread's append, its lane half-written, so a
    /// logger that writes through this very writer must not be called here.
    pub(super) fn note(&self, level: log::Level, args: std::fmt::Arguments<'_>) {
        if level <= log::max_level() {
            relock(&self.notes).push((level, format!("writer {}: {args}", self.addr)));
            self.waiting.store(true, Release);
        }
    }

    /// Queues every message of `frames` (whole frames) as a dead letter; returns how many.
    pub(super) fn dead_letter(&self, frames: &[u8]) -> u64 {
        let mut queue = relock(&self.dead);
        let mut n = 0;
        for payload in Frames::<H>::new(self.config.framing(), frames) {
            let Ok(payload) = payload else {
                break;
            };
            queue.push(payload.to_vec());
            n += 1;
        }
        drop(queue);
        self.dead_lettered(n);
        n
    }

    /// `n` messages were queued as dead letters.
    pub(super) fn dead_lettered(&self, n: u64) {
        if n > 0 && self.config.dead_letter().is_some() {
            self.waiting.store(true, Release);
        }
        add(&self.counters.dead_lettered, n);
    }

    /// Emits the log lines and hands over the dead letters that `send` queued, outside every
    /// lock: a logger or a dead-letter callback may write through this writer. A call made
    /// from inside one of them leaves the work to the outer call.
    #[inline]
    pub(super) fn deliver_deferred(&self) {
        if self.waiting.load(Relaxed) {
            self.deliver_deferred_now();
        }
    }

    #[cold]
    fn deliver_deferred_now(&self) {
        thread_local! {
            static DELIVERING: Cell<bool> = const { Cell::new(false) };
        }
        if DELIVERING.with(|d| d.replace(true)) {
            return;
        }
        // Bounded: a logger whose own writes fail and log could otherwise keep this thread
        // here forever; what is left waits for the next call.
        for _ in 0..8 {
            if !self.waiting.swap(false, Acquire) {
                break;
            }
            let notes = std::mem::take(&mut *relock(&self.notes));
            for (level, line) in &notes {
                log::log!(*level, "{line}");
            }
            if let Some(f) = self.config.dead_letter() {
                let letters = std::mem::take(&mut *relock(&self.dead));
                for letter in &letters {
                    f(letter);
                }
            }
        }
        DELIVERING.with(|d| d.set(false));
    }
}

//! The flusher thread and the hand-off from writing threads to it.

use std::sync::atomic::Ordering::{Acquire, Relaxed, SeqCst};
use std::thread;
use std::time::Duration;

use buffstreams_framing::LengthPrefix;

use super::Shared;
use super::barrier;
use super::lane::{Appended, Lane};

/// A lane that grew by this many messages between two looks of the flusher is streaming:
/// its owner sends the full buffers, the flusher only its tail.
const STREAMING: u64 = 64;

/// What the flusher saw of a lane at its last look.
#[derive(Clone, Copy, Default)]
struct Seen {
    messages: u64,
    committed: usize,
    pending: bool,
    /// Left for its owner to send (streaming).
    hot: bool,
}

/// The flusher's first look at a streaming lane, after which the looks back off to `linger`.
const FIRST_LOOK: Duration = Duration::from_micros(100);

impl<H: LengthPrefix + Send + 'static> Shared<H> {
    /// After an append: wakes the flusher if it asked to hear about this lane (the lane was
    /// quiet, so this is a lone message or the start of a burst: it goes out at once), and
    /// hands over dead letters.
    #[inline]
    pub(super) fn appended(&self, lane: &Lane, appended: Appended, wake: bool) {
        if wake && appended.messages > 0 {
            self.wake_if_asked(lane);
        }
        if appended.sent {
            self.deliver_deferred();
        }
    }

    #[inline]
    pub(super) fn wake_if_asked(&self, lane: &Lane) {
        if lane.take_wake_request() {
            self.waker.wake();
        }
    }

    /// Sends what every lane holds, on the calling thread.
    pub(super) fn flush_all(&self) {
        for (_, lane) in self.lanes.in_use() {
            lane.send_pending(|bytes, n| self.send(bytes, n));
        }
        self.deliver_deferred();
    }

    /// The flusher: sends a quiet lane's messages at once, and a busy lane's tail once it has
    /// stopped growing (its owner sends the full 64 KiB batches itself).
    pub(super) fn flusher(&self) {
        // While a lane keeps streaming, the looks back off from `FIRST_LOOK` to `linger`: a
        // timed wake-up disturbs the sending thread (measured with the bench on the 2-core VM:
        // 1,100 wake-ups a second cost 5-15 % of one thread's throughput, 200 a second were
        // within the noise of no flusher at all).
        let linger = self.config.linger();
        let first = linger.min(FIRST_LOOK);
        let mut wait = first;
        let mut seen = vec![Seen::default(); self.lanes.iter().len()];
        loop {
            let closing = self.closed.load(Acquire);
            let mut hot = false;
            for (i, lane) in self.lanes.in_use() {
                let Some(seen) = seen.get_mut(i) else {
                    continue;
                };
                let released = lane.ticket.released.load(Acquire);
                let now = Seen {
                    messages: lane.messages(),
                    committed: lane.committed(),
                    pending: lane.has_pending(),
                    hot: false,
                };
                // Streaming: since the last look the owner added many messages, or sent a
                // full buffer itself. Its tail waits until it stops (`linger`); anything
                // else goes out now, so that batches grow only under load.
                let streaming = seen.pending
                    && (now.messages.wrapping_sub(seen.messages) >= STREAMING
                        || now.committed < seen.committed);
                let mut now = now;
                if now.pending && (closing || released || !streaming) {
                    lane.send_pending(|bytes, n| self.send(bytes, n));
                } else if now.pending {
                    now.hot = true;
                    hot = true;
                }
                if released {
                    lane.recycle();
                    log::debug!("writer {}: lane freed by an exited thread", self.addr);
                }
                *seen = now;
            }
            if let Some(acked) = &self.acked {
                self.resume(acked);
            }
            self.deliver_deferred();
            if closing {
                if !self.lanes.in_use().any(|(_, l)| l.has_pending()) {
                    return;
                }
                continue;
            }
            // Ask the quiet lanes for a wake-up; when newly asked, force out the producers'
            // last stores and look once more, so that no message slips between. A lane that
            // got messages since the look and is not streaming (so nobody will wake us for
            // it, and no timer is due) means looking again now.
            let mut asked = false;
            let mut fresh = false;
            for (i, lane) in self.lanes.in_use() {
                if lane.has_pending() {
                    fresh |= !seen.get(i).is_some_and(|s| s.hot);
                } else if !lane.wake_me.load(Relaxed) {
                    lane.wake_me.store(true, SeqCst);
                    asked = true;
                }
            }
            if fresh {
                continue;
            }
            let mut sure = true;
            if asked {
                sure = barrier::heavy();
                if self
                    .lanes
                    .in_use()
                    .any(|(_, l)| l.wake_me.load(Relaxed) && l.has_pending())
                {
                    continue;
                }
            }
            if hot {
                thread::park_timeout(wait);
                wait = (wait * 2).min(linger);
                continue;
            }
            wait = first;
            if sure {
                thread::park();
            } else {
                thread::park_timeout(Duration::from_millis(10));
            }
        }
    }
}

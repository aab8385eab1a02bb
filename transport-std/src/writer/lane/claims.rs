//! Which lane each thread writes to: claims kept per thread, the shared lane for the rest.
#![allow(unsafe_code)]

use std::cell::{Cell, RefCell};
use std::slice;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use buffstreams_framing::{EncodeError, Header};

use super::super::sync::{AtomicUsize, Mutex};
use super::{Appended, LANE_CAP, Lane, Sink, Ticket, Waker};

/// Ids of `Lanes`, never reused (a plain counter: it orders nothing).
static NEXT_LANES_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// A writer's lanes: one per writing thread while they last; the last one is shared by the
/// threads that found none free.
pub(crate) struct Lanes {
    id: u64,
    lanes: Box<[Lane]>,
    /// One past the highest lane ever claimed: the flusher looks at these and the shared one
    /// only (each look at a lane is a cache miss; 64 of them cost microseconds).
    high: AtomicUsize,
    shared_producer: Mutex<()>,
}

/// A thread's lane of one writer.
struct Claim {
    lanes: u64,
    lane: usize,
    /// The lane is this thread's alone (not the shared one).
    exclusive: bool,
    /// Dead once the writer is gone: the claim is then pruned.
    ticket: Weak<Ticket>,
}

struct Claims(Vec<Claim>);

impl Drop for Claims {
    fn drop(&mut self) {
        // A write from a later thread-local destructor must not find these lanes any more:
        // it falls back to the shared lane.
        let _ = LAST.try_with(|last| last.set((0, 0, false)));
        // The thread is exiting: its lanes go back to their writers, whose flushers send what
        // is left in them and hand them to the next thread.
        for claim in self.0.iter().filter(|c| c.exclusive) {
            if let Some(ticket) = claim.ticket.upgrade() {
                ticket.released.store(true, Ordering::Release);
                ticket.waker.wake();
            }
        }
    }
}

#[cfg(not(loom))]
thread_local! {
    static CLAIMS: RefCell<Claims> = const { RefCell::new(Claims(Vec::new())) };
    /// The claim used last, `(lanes id, lane, exclusive)`: one compare on the hot path (ids
    /// are never reused, so a stale entry never matches).
    static LAST: Cell<(u64, usize, bool)> = const { Cell::new((0, 0, false)) };
}

// The model's threads share one OS thread: their thread-locals must be the model's.
#[cfg(loom)]
loom::thread_local! {
    static CLAIMS: RefCell<Claims> = RefCell::new(Claims(Vec::new()));
    static LAST: Cell<(u64, usize, bool)> = Cell::new((0, 0, false));
}

impl Lanes {
    /// Lanes for `max_buffer` bytes in all: as many 64 KiB lanes as fit, at least two
    /// (smaller then), the last one shared.
    #[cfg(test)]
    pub(crate) fn new(max_buffer: usize, waker: Arc<Waker>) -> Self {
        Self::with_cap(max_buffer, LANE_CAP, waker)
    }

    /// The same with lanes of at most `largest` bytes (at most 64 KiB).
    pub(crate) fn with_cap(max_buffer: usize, largest: usize, waker: Arc<Waker>) -> Self {
        let largest = largest.clamp(1, LANE_CAP);
        let count = (max_buffer / largest).max(2);
        let cap = (max_buffer / count).clamp(1, largest);
        Self {
            id: NEXT_LANES_ID.fetch_add(1, Ordering::Relaxed),
            lanes: (0..count).map(|_| Lane::new(cap, waker.clone())).collect(),
            high: AtomicUsize::new(0),
            shared_producer: Mutex::new(()),
        }
    }

    /// The size of every lane's buffer.
    pub(crate) fn cap(&self) -> usize {
        self.lanes.first().map_or(LANE_CAP, |l| l.cap)
    }

    /// Every lane, the shared one last.
    pub(crate) fn iter(&self) -> slice::Iter<'_, Lane> {
        self.lanes.iter()
    }

    /// The lanes that may hold messages, with their index: those claimed so far and the
    /// shared one.
    pub(crate) fn in_use(&self) -> impl Iterator<Item = (usize, &Lane)> {
        let shared = self.lanes.len() - 1;
        let high = self.high.load(Ordering::Acquire).min(shared);
        self.lanes
            .iter()
            .enumerate()
            .take(high)
            .chain(self.lanes.iter().enumerate().skip(shared))
    }

    /// Appends to the calling thread's lane (see [`Lane::append`]); returns what was appended
    /// and the lane.
    pub(crate) fn append<M: AsRef<[u8]>>(
        &self,
        messages: impl IntoIterator<Item = M>,
        header: impl Fn(usize) -> Result<Header, EncodeError>,
        send: impl Sink,
    ) -> Result<(Appended, &Lane), EncodeError> {
        let (index, exclusive) = self.mine();
        let lane = self.lanes.get(index).unwrap_or(self.shared());
        let appended = if exclusive {
            // SAFETY: this thread claimed the lane (`try_claim` won, and the claim is in this
            // thread's `CLAIMS`; the lane is freed only after the thread exits), so it is the
            // lane's only producer. `send` comes from the writer and only writes to the socket.
            unsafe { lane.append(messages, header, send) }
        } else {
            let _producer = self
                .shared_producer
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            // SAFETY: threads without a lane of their own append to the shared lane only while
            // holding `shared_producer`.
            unsafe { lane.append(messages, header, send) }
        }?;
        Ok((appended, lane))
    }

    /// Appends one frame to the calling thread's own lane if it fits there without sending
    /// anything (the common case, kept small enough to inline); `None` when it did nothing.
    #[inline]
    pub(crate) fn try_append_one(&self, header: &Header, message: &[u8]) -> Option<&Lane> {
        let (index, exclusive) = self.mine();
        let lane = self.lanes.get(index)?;
        // SAFETY: as in `append`: this thread claimed the lane.
        (exclusive && unsafe { lane.try_append_one(header, message) }).then_some(lane)
    }

    fn shared(&self) -> &Lane {
        // `new` makes at least two lanes.
        &self.lanes[self.lanes.len() - 1]
    }

    /// This thread's lane: `(index, exclusive)`.
    #[inline]
    fn mine(&self) -> (usize, bool) {
        let last = LAST.with(Cell::get);
        if last.0 == self.id {
            return (last.1, last.2);
        }
        self.mine_slow()
    }

    #[cold]
    fn mine_slow(&self) -> (usize, bool) {
        let found = CLAIMS.try_with(|claims| {
            claims
                .borrow()
                .0
                .iter()
                .find(|c| c.lanes == self.id)
                .map(|c| (c.lane, c.exclusive))
        });
        let (lane, exclusive) = match found {
            Ok(Some(mine)) => mine,
            Ok(None) => self.claim(),
            // Called from a thread-local destructor while the thread exits: share.
            Err(_) => return (self.lanes.len() - 1, false),
        };
        LAST.with(|last| last.set((self.id, lane, exclusive)));
        (lane, exclusive)
    }

    #[cold]
    fn claim(&self) -> (usize, bool) {
        let shared = self.lanes.len() - 1;
        let own = self.lanes.iter().take(shared).position(Lane::try_claim);
        let (lane, exclusive) = own.map_or((shared, false), |i| (i, true));
        if exclusive {
            // Before the first append: the flusher then looks at this lane.
            self.high.fetch_max(lane + 1, Ordering::AcqRel);
        }
        let slot = self.lanes.get(lane).unwrap_or(self.shared());
        if exclusive {
            // SAFETY: this thread just claimed the lane: it is its producer. (Its buffer is
            // allocated here, off the hot path; the shared lane's by its first append.)
            unsafe { slot.own_buffer() };
        }
        let claim = Claim {
            lanes: self.id,
            lane,
            exclusive,
            ticket: Arc::downgrade(&slot.ticket),
        };
        let stored = CLAIMS.try_with(|claims| {
            let mut claims = claims.borrow_mut();
            claims.0.retain(|c| c.ticket.strong_count() > 0);
            claims.0.push(claim);
        });
        match stored {
            Ok(()) => (lane, exclusive),
            Err(_) => {
                if exclusive {
                    slot.ticket.released.store(true, Ordering::Release);
                    slot.ticket.waker.wake();
                }
                (shared, false)
            }
        }
    }
}

//! Per-thread send buffers ("lanes"): the writer's hot path without a lock per message.
//!
//! Each thread that writes through a [`Writer`](crate::Writer) claims a lane: a buffer of at
//! most 64 KiB that only it appends to. It publishes whole frames with one release store (a
//! plain `mov` on x86); when the next frame does not fit, it sends the published bytes itself
//! in one `write(2)` of at most 64 KiB, the way a `BufWriter` would. The flusher thread and
//! `flush` send what is published but not yet sent, holding the lane's send lock.
//!
//! Why `unsafe`: the safe alternative is a `Mutex` around the buffer, locked for every message.
//! Its lock and unlock are full barriers that wait for the message's stores to drain; measured
//! on the bench (110-byte messages, one connection) that writer made 24 M msgs/s against
//! 83 M/s for a plain `BufWriter` in the same run. The protocol that makes the shared bytes
//! sound is small and stated once, on [`Lane`].
#![allow(unsafe_code)]

use std::cell::{Cell, RefCell, UnsafeCell};
use std::ptr;
use std::slice;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::thread::Thread;

use buffstreams_framing::{EncodeError, Header, MAX_HEADER_LEN};

/// Largest lane: one `write(2)` of at most this many bytes. Loopback (and TSO on real NICs)
/// takes 64 KiB in one segment; 65.7 KB writes measured 40 % slower than 64 KiB ones here.
pub(crate) const LANE_CAP: usize = 64 * 1024;

/// The flusher thread's wake-up handle, shared with every lane.
#[derive(Debug, Default)]
pub(crate) struct Waker {
    thread: OnceLock<Thread>,
}

impl Waker {
    pub(crate) fn set(&self, thread: Thread) {
        let _ = self.thread.set(thread);
    }

    pub(crate) fn wake(&self) {
        if let Some(t) = self.thread.get() {
            t.unpark();
        }
    }
}

/// Shared between a lane and the thread-local claim of its owner.
#[derive(Debug)]
pub(crate) struct Ticket {
    /// The owner thread has exited: the flusher sends what is left and frees the lane.
    pub(crate) released: AtomicBool,
    pub(crate) waker: Arc<Waker>,
}

/// A byte buffer with one producer at a time and any number of senders.
///
/// The protocol:
/// - The producer (the thread that claimed the lane, or whoever holds the shared lane's
///   producer lock) writes bytes only at offsets `>= committed` and then publishes them by
///   storing a larger `committed` with `Release`.
/// - Senders hold `tx` (the offset sent so far), load `committed` with `Acquire` and read only
///   bytes in `[sent, committed)`.
/// - Bytes below `committed` are never written again until `committed` is reset to 0, and the
///   reset (with the move of the producer's unpublished bytes to the front) happens only
///   while holding `tx`.
#[repr(align(128))] // each lane's hot counters on their own cache lines
pub(crate) struct Lane {
    committed: AtomicUsize,
    /// Messages published through this lane (monotonic): the flusher tells a growing lane
    /// from a quiet one by it.
    messages: AtomicU64,
    /// The flusher wants a wake-up when this lane gets a message (it was quiet, or the
    /// flusher has not looked at it yet: true from the start).
    pub(crate) wake_me: AtomicBool,
    /// Mirror of `tx` for lock-free "anything unsent?" checks; may lag, which only costs a
    /// needless lock.
    sent_hint: AtomicUsize,
    claimed: AtomicBool,
    /// The producer's side of the fence pair is a compiler fence only (`barrier::asymmetric`).
    asymmetric: bool,
    cap: usize,
    buf: OnceLock<Box<[UnsafeCell<u8>]>>,
    tx: Mutex<usize>,
    pub(crate) ticket: Arc<Ticket>,
}

// SAFETY: `buf` is the only field that is not `Sync` by itself; every access to it follows
// the protocol documented on `Lane`, so no byte is written by one thread while another reads
// or writes it.
unsafe impl Sync for Lane {}

/// What one producer call appended.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Appended {
    pub(crate) messages: u64,
    pub(crate) bytes: usize,
    /// The call sent bytes itself (so it may have produced dead letters).
    pub(crate) sent: bool,
}

impl Lane {
    pub(crate) fn new(cap: usize, waker: Arc<Waker>) -> Self {
        Self {
            committed: AtomicUsize::new(0),
            messages: AtomicU64::new(0),
            wake_me: AtomicBool::new(true),
            sent_hint: AtomicUsize::new(0),
            claimed: AtomicBool::new(false),
            asymmetric: barrier::asymmetric(),
            cap: cap.clamp(1, LANE_CAP),
            buf: OnceLock::new(),
            tx: Mutex::new(0),
            ticket: Arc::new(Ticket {
                released: AtomicBool::new(false),
                waker,
            }),
        }
    }

    /// Makes this thread the lane's producer if nobody is.
    pub(crate) fn try_claim(&self) -> bool {
        self.claimed
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    /// The buffer, allocated on first use.
    #[inline]
    pub(crate) fn buffer(&self) -> &[UnsafeCell<u8>] {
        self.buf
            .get_or_init(|| (0..self.cap).map(|_| UnsafeCell::new(0)).collect())
    }

    /// After publishing: whether the flusher asked to hear about this lane (the request is
    /// taken: one wake-up per request). The producer side of the asymmetric fence pair.
    #[inline]
    pub(crate) fn take_wake_request(&self) -> bool {
        if self.asymmetric {
            std::sync::atomic::compiler_fence(Ordering::SeqCst);
        } else {
            std::sync::atomic::fence(Ordering::SeqCst);
        }
        self.wake_me.load(Ordering::Relaxed) && self.wake_me.swap(false, Ordering::Relaxed)
    }

    /// Messages published through this lane so far.
    #[inline]
    pub(crate) fn messages(&self) -> u64 {
        self.messages.load(Ordering::Relaxed)
    }

    /// Bytes published in the current buffer (drops to 0 when it is sent whole).
    pub(crate) fn committed(&self) -> usize {
        self.committed.load(Ordering::Relaxed)
    }

    /// Whether published bytes wait to be sent (a stale answer is only ever "yes").
    pub(crate) fn has_pending(&self) -> bool {
        // `committed` first: its acquire makes any reset of the mirror visible.
        let committed = self.committed.load(Ordering::Acquire);
        committed != self.sent_hint.load(Ordering::Relaxed)
    }

    fn lock_tx(&self) -> MutexGuard<'_, usize> {
        // Nothing panics while holding `tx` except `send`, which never leaves it inconsistent.
        self.tx.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends what is published and not sent yet; returns whether there was anything.
    pub(crate) fn send_pending(&self, send: impl FnOnce(&[u8])) -> bool {
        let Some(buf) = self.buf.get() else {
            return false;
        };
        let mut sent = self.lock_tx();
        let committed = self.committed.load(Ordering::Acquire);
        if committed <= *sent {
            return false;
        }
        let base = UnsafeCell::raw_get(buf.as_ptr());
        // SAFETY: `sent <= committed <= buf.len()`. The bytes in `[sent, committed)` were
        // published by the producer's release store, which the acquire load above observed,
        // and the producer does not write below `committed` until it resets it, which needs
        // `tx`: held here until the slice is gone.
        let bytes = unsafe { slice::from_raw_parts(base.add(*sent), committed - *sent) };
        send(bytes);
        *sent = committed;
        self.sent_hint.store(committed, Ordering::Relaxed);
        true
    }

    /// Frees a released lane for the next thread (after its bytes were sent).
    pub(crate) fn recycle(&self) {
        let mut sent = self.lock_tx();
        *sent = 0;
        self.sent_hint.store(0, Ordering::Relaxed);
        self.committed.store(0, Ordering::Relaxed);
        self.ticket.released.store(false, Ordering::Relaxed);
        drop(sent);
        self.claimed.store(false, Ordering::Release);
    }

    /// Appends one frame if it fits without sending anything: the common case, small enough
    /// to inline. Returns `false` (nothing done) otherwise.
    ///
    /// # Safety
    /// As [`append`](Self::append).
    #[inline]
    unsafe fn try_append_one(&self, header: &Header, message: &[u8]) -> bool {
        let Some(buf) = self.buf.get() else {
            return false;
        };
        let len = self.committed.load(Ordering::Relaxed);
        // Room for the padded header too: it is copied whole (one fixed-size move) and the
        // payload then overwrites its padding.
        if MAX_HEADER_LEN + message.len() > buf.len() - len {
            return false;
        }
        let base = UnsafeCell::raw_get(buf.as_ptr());
        // SAFETY: `len + MAX_HEADER_LEN + message.len() <= buf.len()` and `len` is
        // `committed`: unpublished bytes that only the producer (the caller) touches; the
        // sources are disjoint from `buf`.
        unsafe {
            ptr::copy_nonoverlapping(header.padded().as_ptr(), base.add(len), MAX_HEADER_LEN);
            ptr::copy_nonoverlapping(
                message.as_ptr(),
                base.add(len + header.len()),
                message.len(),
            );
        }
        self.messages.store(self.messages() + 1, Ordering::Relaxed);
        self.committed
            .store(len + header.len() + message.len(), Ordering::Release);
        true
    }

    /// Appends `messages` as frames and publishes them together. When they do not fit, the
    /// published bytes are sent first (through `send`, on this thread); a batch larger than
    /// the lane is sent in one piece from a temporary buffer. Returns what was appended; on
    /// an encoding error nothing of this call is published or sent.
    ///
    /// # Safety
    /// The caller is the lane's only producer for the whole call: the thread that claimed it,
    /// or the holder of the shared lane's producer lock. `send` must not append to this lane.
    pub(crate) unsafe fn append<M: AsRef<[u8]>>(
        &self,
        messages: impl IntoIterator<Item = M>,
        header: impl Fn(usize) -> Result<Header, EncodeError>,
        mut send: impl FnMut(&[u8]),
    ) -> Result<Appended, EncodeError> {
        let buf = self.buffer();
        let cap = buf.len();
        let base = UnsafeCell::raw_get(buf.as_ptr());
        // Only the producer stores `committed` outside `tx`, and we are the producer.
        let mut start = self.committed.load(Ordering::Relaxed);
        let mut len = start;
        let mut spill: Option<Vec<u8>> = None;
        let mut done = Appended::default();
        for m in messages {
            let m = m.as_ref();
            let h = header(m.len())?;
            let n = h.len() + m.len();
            done.messages += 1;
            done.bytes += n;
            if let Some(v) = spill.as_mut() {
                v.extend_from_slice(&h);
                v.extend_from_slice(m);
                continue;
            }
            if n > cap - len && start > 0 {
                // Full: the published frames go out in one write, this call's move to the front.
                let mut sent = self.lock_tx();
                // SAFETY: `[sent, start)` is published (`start` is `committed`) and nobody
                // else writes it; we hold `tx`, so no sender reads it meanwhile either.
                send(unsafe { slice::from_raw_parts(base.add(*sent), start - *sent) });
                done.sent = true;
                // SAFETY: `start <= len <= cap`: both ranges lie in `buf`. Holding `tx`, we
                // may overwrite the published bytes: no sender reads without it.
                unsafe { ptr::copy(base.add(start), base, len - start) };
                len -= start;
                start = 0;
                *sent = 0;
                self.sent_hint.store(0, Ordering::Relaxed);
                self.committed.store(0, Ordering::Relaxed);
            }
            if n > cap - len {
                let mut v = Vec::with_capacity(len + n);
                // SAFETY: `[0, len)` holds this call's unpublished frames (`start` is 0 here):
                // written by us and read by nobody else.
                v.extend_from_slice(unsafe { slice::from_raw_parts(base, len) });
                v.extend_from_slice(&h);
                v.extend_from_slice(m);
                spill = Some(v);
                len = 0;
                continue;
            }
            // SAFETY: `len + n <= cap` and `len >= committed`: unpublished bytes that only the
            // producer touches; the sources are the caller's slices, disjoint from `buf`.
            unsafe {
                ptr::copy_nonoverlapping(h.as_ptr(), base.add(len), h.len());
                ptr::copy_nonoverlapping(m.as_ptr(), base.add(len + h.len()), m.len());
            }
            len += n;
        }
        self.messages
            .store(self.messages() + done.messages, Ordering::Relaxed);
        match spill {
            Some(v) => {
                // `start` is 0: nothing published waits before these frames.
                let _sent = self.lock_tx();
                send(&v);
                done.sent = true;
            }
            None => self.committed.store(len, Ordering::Release),
        }
        Ok(done)
    }
}

static NEXT_LANES_ID: AtomicU64 = AtomicU64::new(1);

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

thread_local! {
    static CLAIMS: RefCell<Claims> = const { RefCell::new(Claims(Vec::new())) };
    /// The claim used last, `(lanes id, lane, exclusive)`: one compare on the hot path (ids
    /// are never reused, so a stale entry never matches).
    static LAST: Cell<(u64, usize, bool)> = const { Cell::new((0, 0, false)) };
}

impl Lanes {
    /// Lanes for `max_buffer` bytes in all: as many 64 KiB lanes as fit, at least two
    /// (smaller then), the last one shared.
    pub(crate) fn new(max_buffer: usize, waker: Arc<Waker>) -> Self {
        let count = (max_buffer / LANE_CAP).max(2);
        let cap = (max_buffer / count).clamp(1, LANE_CAP);
        Self {
            id: NEXT_LANES_ID.fetch_add(1, Ordering::Relaxed),
            lanes: (0..count).map(|_| Lane::new(cap, waker.clone())).collect(),
            high: AtomicUsize::new(0),
            shared_producer: Mutex::new(()),
        }
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
        send: impl FnMut(&[u8]),
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
        LAST.set((self.id, lane, exclusive));
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
        slot.buffer(); // allocated here, off the hot path
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

/// The asymmetric fence pair that lets producers publish without a barrier of their own.
///
/// The flusher sets a lane's `wake_me` and then calls [`barrier::heavy`]; a producer stores
/// `committed` and calls [`Lane::take_wake_request`], which fences and loads `wake_me`. With Linux `membarrier` (private
/// expedited), `heavy` runs a full barrier on every CPU running a thread of this process, so
/// either the flusher's re-check sees the message or the producer sees `wake_me`; the
/// producer's fence is then only a compiler fence. Elsewhere both are `SeqCst` fences.
pub(crate) mod barrier {
    use std::sync::atomic::{AtomicU8, Ordering, fence};

    const UNKNOWN: u8 = 0;
    const MEMBARRIER: u8 = 1;
    const FENCE: u8 = 2;
    static MODE: AtomicU8 = AtomicU8::new(UNKNOWN);

    #[cfg(target_os = "linux")]
    fn membarrier(cmd: rustix::thread::MembarrierCommand) -> bool {
        rustix::thread::membarrier(cmd).is_ok()
    }

    /// Chooses the mode once per process, before the first producer runs.
    pub(crate) fn init() {
        if MODE.load(Ordering::Acquire) != UNKNOWN {
            return;
        }
        #[cfg(target_os = "linux")]
        let mode = if membarrier(rustix::thread::MembarrierCommand::RegisterPrivateExpedited) {
            MEMBARRIER
        } else {
            FENCE
        };
        #[cfg(not(target_os = "linux"))]
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

    /// Whether producers may skip their fence ([`super::Lane::take_wake_request`] is the light side):
    /// decided by [`init`], before the first lane exists.
    pub(crate) fn asymmetric() -> bool {
        MODE.load(Ordering::Acquire) == MEMBARRIER
    }

    /// Flusher side, between setting `wake_me` and re-checking the lanes. Returns `false` if
    /// the producers' stores could not be forced out (the flusher then parks with a timeout).
    pub(crate) fn heavy() -> bool {
        fence(Ordering::SeqCst);
        #[cfg(target_os = "linux")]
        if MODE.load(Ordering::Relaxed) == MEMBARRIER {
            return membarrier(rustix::thread::MembarrierCommand::PrivateExpedited);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use buffstreams_framing::{BigEndian, Config, Encoder};
    use proptest::prelude::*;
    use std::sync::mpsc;
    use std::thread;

    fn frames(messages: &[Vec<u8>]) -> Vec<u8> {
        let mut out = Vec::new();
        for m in messages {
            out.extend_from_slice(&(m.len() as u32).to_be_bytes());
            out.extend_from_slice(m);
        }
        out
    }

    /// Splits `bytes` into whole frames; fails on a cut frame.
    fn whole_frames(bytes: &[u8]) -> usize {
        let mut at = 0;
        let mut n = 0;
        while at < bytes.len() {
            let len = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
            at += 4 + len;
            n += 1;
        }
        assert_eq!(at, bytes.len(), "a send cut a frame");
        n
    }

    #[derive(Clone, Debug)]
    enum Op {
        Append(Vec<usize>),
        SendPending,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => prop::collection::vec(0usize..200, 1..6).prop_map(Op::Append),
            1 => Just(Op::SendPending),
        ]
    }

    proptest! {
        /// Any sequence of appends (single messages and batches, some larger than the lane)
        /// and sends: the bytes sent are exactly the frames in order, every send holds whole
        /// frames, and only a batch larger than the lane makes a send larger than the lane.
        #[test]
        fn sends_are_the_frames_in_order(ops in prop::collection::vec(op(), 1..60), cap in 16usize..700) {
            let lanes = Lanes::new(cap, Arc::new(Waker::default()));
            let enc = Encoder::<BigEndian<4>>::new(Config::new().with_max_frame_len(1000));
            let mut sent: Vec<Vec<u8>> = Vec::new();
            let mut written: Vec<Vec<u8>> = Vec::new();
            let mut big_batches: Vec<Vec<u8>> = Vec::new();
            let mut lane_cap = 0;
            for (k, op) in ops.iter().enumerate() {
                match op {
                    Op::Append(sizes) => {
                        let batch: Vec<Vec<u8>> =
                            sizes.iter().map(|&n| vec![k as u8; n]).collect();
                        let (done, lane) = lanes
                            .append(&batch, |n| enc.header(n), |b: &[u8]| sent.push(b.to_vec()))
                            .unwrap();
                        lane_cap = lane.cap;
                        prop_assert_eq!(done.messages, batch.len() as u64);
                        prop_assert_eq!(done.bytes, frames(&batch).len());
                        if done.bytes > lane_cap {
                            big_batches.push(frames(&batch));
                        }
                        written.extend(batch);
                    }
                    Op::SendPending => {
                        for lane in lanes.iter() {
                            lane.send_pending(|b| sent.push(b.to_vec()));
                        }
                    }
                }
            }
            for lane in lanes.iter() {
                lane.send_pending(|b| sent.push(b.to_vec()));
                prop_assert!(!lane.has_pending());
            }
            for s in &sent {
                whole_frames(s);
                prop_assert!(s.len() <= lane_cap || big_batches.contains(s));
            }
            prop_assert_eq!(sent.concat(), frames(&written));
            let total: u64 = lanes.iter().map(Lane::messages).sum();
            prop_assert_eq!(total, written.len() as u64);
        }
    }

    /// A producer and a sender on two threads: every frame arrives once, in order, whole.
    #[test]
    fn concurrent_producer_and_sender() {
        let lanes = Arc::new(Lanes::new(1024, Arc::new(Waker::default())));
        let enc = Encoder::<BigEndian<4>>::new(Config::new());
        let (tx, rx) = mpsc::channel::<Vec<u8>>();
        let stop = Arc::new(AtomicBool::new(false));
        let sender = {
            let (lanes, tx, stop) = (lanes.clone(), tx.clone(), stop.clone());
            thread::spawn(move || {
                while !stop.load(Ordering::Acquire) {
                    for lane in lanes.iter() {
                        lane.send_pending(|b| tx.send(b.to_vec()).unwrap());
                    }
                }
            })
        };
        let mut written = Vec::new();
        for i in 0..200_000u32 {
            let m = i.to_le_bytes().repeat(1 + (i % 7) as usize);
            lanes
                .append(
                    [&m],
                    |n| enc.header(n),
                    |b: &[u8]| tx.send(b.to_vec()).unwrap(),
                )
                .unwrap();
            written.push(m);
        }
        stop.store(true, Ordering::Release);
        sender.join().unwrap();
        for lane in lanes.iter() {
            lane.send_pending(|b| tx.send(b.to_vec()).unwrap());
        }
        drop(tx);
        let sent: Vec<Vec<u8>> = rx.iter().collect();
        for s in &sent {
            whole_frames(s);
        }
        assert_eq!(sent.concat(), frames(&written));
    }

    /// A lane whose thread exited is handed to the next thread once recycled; until then
    /// the next thread gets another lane (or the shared one).
    #[test]
    fn lanes_are_claimed_per_thread_and_recycled() {
        let lanes = Arc::new(Lanes::new(3 * LANE_CAP, Arc::new(Waker::default())));
        let enc = Encoder::<BigEndian<4>>::new(Config::new());
        let index =
            |lanes: &Lanes, lane: &Lane| lanes.iter().position(|l| std::ptr::eq(l, lane)).unwrap();
        let claim = |lanes: Arc<Lanes>| {
            thread::spawn(move || {
                let (_, lane) = lanes
                    .append([b"m"], |n| enc.header(n), |_: &[u8]| {})
                    .unwrap();
                index(&lanes, lane)
            })
            .join()
            .unwrap()
        };
        assert_eq!(lanes.iter().len(), 3);
        assert_eq!(claim(lanes.clone()), 0);
        // Lane 0 is released (its thread exited) but not recycled yet.
        assert!(
            lanes
                .iter()
                .next()
                .unwrap()
                .ticket
                .released
                .load(Ordering::Acquire)
        );
        assert_eq!(claim(lanes.clone()), 1);
        assert_eq!(
            claim(lanes.clone()),
            2,
            "no lane of its own left: the shared one"
        );
        let first = lanes.iter().next().unwrap();
        first.send_pending(|_| {});
        first.recycle();
        assert_eq!(claim(lanes.clone()), 0);
        // The same thread keeps its lane.
        let (_, a) = lanes
            .append([b"a"], |n| enc.header(n), |_: &[u8]| {})
            .unwrap();
        let (_, b) = lanes
            .append([b"b"], |n| enc.header(n), |_: &[u8]| {})
            .unwrap();
        assert!(std::ptr::eq(a, b));
    }
}

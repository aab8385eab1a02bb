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

use std::ops::Range;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::thread::Thread;

use buffstreams_framing::{EncodeError, Header, MAX_HEADER_LEN};

use super::barrier;
use super::sync::{AtomicBool, AtomicU64, AtomicUsize, Mutex, MutexGuard, fence};
use buf::{Buf, Slot};

mod buf;
mod claims;
#[cfg(all(test, loom))]
mod loom;
#[cfg(all(test, not(loom)))]
mod tests;

pub(crate) use claims::Lanes;

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

/// Where a lane's bytes go when they are sent: the writer's connection.
pub(crate) trait Sink {
    /// Sends `bytes`, `count` whole frames, from the lane's buffer (which it keeps).
    fn send(&mut self, bytes: &[u8], count: u32);

    /// A buffer of `len` bytes for a full lane to continue in, when the sink would rather
    /// keep the full one than copy from it (then given to [`hand_over`](Self::hand_over));
    /// `None` (the default): the lane sends from its buffer and keeps it. Asked only when
    /// the bytes to send fill half the buffer at least.
    fn spare(&mut self, len: usize) -> Option<Box<[u8]>> {
        let _ = len;
        None
    }

    /// Sends frames `range` of `buf`, `count` of them: a full lane's buffer, now the sink's.
    #[allow(clippy::boxed_local)] // owned: a sink that asked for it keeps it
    fn hand_over(&mut self, buf: Box<[u8]>, range: Range<usize>, count: u32) {
        if let Some(bytes) = buf.get(range) {
            self.send(bytes, count);
        }
    }
}

impl<F: FnMut(&[u8], u32)> Sink for F {
    fn send(&mut self, bytes: &[u8], count: u32) {
        self(bytes, count);
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
///   storing a larger `committed` with `Release` (with the count of frames published in
///   the buffer beside it, in the same atomic: see [`pack`]).
/// - Senders hold `tx` (the offset sent so far), load `committed` with `Acquire` and read only
///   bytes in `[sent, committed)`.
/// - Bytes below `committed` are never written again until `committed` is reset to 0, and the
///   reset (with the move of the producer's unpublished bytes to the front) happens only
///   while holding `tx`.
/// - The buffer itself (`buf`) is replaced only by the producer holding `tx` (a full one
///   handed over to the sink, with the unpublished bytes moved to the front of the next),
///   and at the same time as that reset. The producer reads `buf` at any time; everybody
///   else only while holding `tx`.
#[repr(align(128))] // each lane's hot counters on their own cache lines
pub(crate) struct Lane {
    /// Bytes and frames published in the buffer ([`pack`]).
    committed: AtomicU64,
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
    buf: Slot,
    tx: Mutex<Sent>,
    pub(crate) ticket: Arc<Ticket>,
}

/// How far a lane's buffer has been sent: bytes, and the frames in them.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Sent {
    bytes: usize,
    frames: u32,
}

/// `committed`'s value: the bytes published in the buffer (at most [`LANE_CAP`]) in the low
/// half, the frames among them in the high half. One atomic, so a sender that sees the bytes
/// also sees how many messages they are, and the window downstream never re-parses them.
#[inline(always)]
fn pack(bytes: usize, frames: u32) -> u64 {
    bytes as u64 | (u64::from(frames) << 32)
}

#[inline(always)]
fn unpack(committed: u64) -> (usize, u32) {
    ((committed & 0xffff_ffff) as usize, (committed >> 32) as u32)
}

// SAFETY: `buf` is the only field that is not `Sync` by itself; every access to it (to the
// slot, and to the bytes of the buffer in it) follows the protocol documented on `Lane`, so
// nothing is written by one thread while another reads or writes it (checked by the loom
// model in `loom.rs`).
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
            committed: AtomicU64::new(0),
            messages: AtomicU64::new(0),
            wake_me: AtomicBool::new(true),
            sent_hint: AtomicUsize::new(0),
            claimed: AtomicBool::new(false),
            asymmetric: barrier::asymmetric(),
            cap: cap.clamp(1, LANE_CAP),
            buf: Slot::new(),
            tx: Mutex::new(Sent::default()),
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

    /// Allocates the buffer if there is none yet: called by the lane's producer (or before
    /// any thread uses the lane), holding `tx` as every change of the slot does.
    fn allocate(&self) {
        let _tx = self.lock_tx();
        // SAFETY: holding `tx`: nobody replaces the buffer meanwhile.
        if unsafe { self.buf.get() }.is_none() {
            // SAFETY: holding `tx`, and the caller is the producer (the only one who changes
            // the slot) or nobody uses the lane yet.
            unsafe { self.buf.replace(Buf::new(self.cap)) };
        }
    }

    /// The producer's buffer (allocated if need be).
    ///
    /// # Safety
    /// The caller is the lane's producer.
    #[inline]
    unsafe fn own_buffer(&self) -> &Buf {
        loop {
            // SAFETY: the producer may read the slot at any time: only it replaces the buffer.
            if let Some(buf) = unsafe { self.buf.get() } {
                return buf;
            }
            self.allocate();
        }
    }

    /// After publishing: whether the flusher asked to hear about this lane (the request is
    /// taken: one wake-up per request). The producer side of the asymmetric fence pair.
    #[inline]
    pub(crate) fn take_wake_request(&self) -> bool {
        if self.asymmetric {
            std::sync::atomic::compiler_fence(Ordering::SeqCst);
        } else {
            fence(Ordering::SeqCst);
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
        unpack(self.committed.load(Ordering::Relaxed)).0
    }

    /// Whether published bytes wait to be sent (a stale answer is only ever "yes").
    pub(crate) fn has_pending(&self) -> bool {
        // `committed` first: its acquire makes any reset of the mirror visible.
        let (committed, _) = unpack(self.committed.load(Ordering::Acquire));
        committed != self.sent_hint.load(Ordering::Relaxed)
    }

    fn lock_tx(&self) -> MutexGuard<'_, Sent> {
        // Nothing panics while holding `tx` except `send`, which never leaves it inconsistent.
        self.tx.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends what is published and not sent yet (its bytes, and how many frames they are);
    /// returns whether there was anything.
    pub(crate) fn send_pending(&self, send: impl FnOnce(&[u8], u32)) -> bool {
        let mut sent = self.lock_tx();
        // SAFETY: holding `tx`: the producer does not replace the buffer meanwhile.
        let Some(buf) = (unsafe { self.buf.get() }) else {
            return false;
        };
        let committed = self.committed.load(Ordering::Acquire);
        let (bytes, frames) = unpack(committed);
        if bytes <= sent.bytes {
            return false;
        }
        let count = frames.wrapping_sub(sent.frames);
        // SAFETY: `sent <= committed <= buf.len()`. The bytes in `[sent, committed)` were
        // published by the producer's release store, which the acquire load above observed,
        // and the producer does not write below `committed` until it resets it, which needs
        // `tx`: held here until the slice is gone.
        unsafe { buf.read(sent.bytes, bytes - sent.bytes, |b| send(b, count)) };
        *sent = Sent { bytes, frames };
        self.sent_hint.store(bytes, Ordering::Relaxed);
        true
    }

    /// Frees a released lane for the next thread (after its bytes were sent).
    pub(crate) fn recycle(&self) {
        let mut sent = self.lock_tx();
        *sent = Sent::default();
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
        // SAFETY: the caller is the producer.
        let Some(buf) = (unsafe { self.buf.get() }) else {
            return false;
        };
        let (len, frames) = unpack(self.committed.load(Ordering::Relaxed));
        // Room for the padded header too: it is copied whole (one fixed-size move) and the
        // payload then overwrites its padding.
        if MAX_HEADER_LEN + message.len() > buf.len() - len {
            return false;
        }
        // SAFETY: `len + MAX_HEADER_LEN + message.len() <= buf.len()` and `len` is
        // `committed`: unpublished bytes that only the producer (the caller) touches.
        unsafe {
            buf.write(len, header.padded());
            buf.write(len + header.len(), message);
        }
        self.messages.store(self.messages() + 1, Ordering::Relaxed);
        let end = len + header.len() + message.len();
        self.committed
            .store(pack(end, frames + 1), Ordering::Release);
        true
    }

    /// Appends `messages` as frames and publishes them together. When they do not fit, the
    /// published bytes are sent first (to `sink`, on this thread, with their frame count:
    /// from the buffer, or the buffer handed over whole if the sink gives a spare for it); a
    /// batch larger than the lane is sent in one piece from a temporary buffer. Returns what
    /// was appended; on an encoding error nothing of this call is published or sent.
    ///
    /// # Safety
    /// The caller is the lane's only producer for the whole call: the thread that claimed it,
    /// or the holder of the shared lane's producer lock. `sink` must not append to this lane.
    pub(crate) unsafe fn append<M: AsRef<[u8]>>(
        &self,
        messages: impl IntoIterator<Item = M>,
        header: impl Fn(usize) -> Result<Header, EncodeError>,
        mut sink: impl Sink,
    ) -> Result<Appended, EncodeError> {
        // SAFETY: the caller is the producer.
        let mut buf = unsafe { self.own_buffer() };
        let cap = buf.len();
        // Only the producer stores `committed` outside `tx`, and we are the producer.
        let (mut start, mut published) = unpack(self.committed.load(Ordering::Relaxed));
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
                let count = published.wrapping_sub(sent.frames);
                // Nothing to send when a sender took every published byte meanwhile; the
                // buffer is handed over only when they fill half of it at least (kept for
                // less, it would hold more memory than frames).
                let pending = start - sent.bytes;
                done.sent |= pending > 0;
                let spare = if pending >= cap / 2 && pending > 0 {
                    sink.spare(cap)
                } else {
                    None
                };
                match spare.filter(|b| b.len() == cap).map(Buf::from_bytes) {
                    Some(next) => {
                        // SAFETY: `[start, len)` are this call's unpublished frames, written
                        // by us and read by nobody else; `next` is not shared yet.
                        unsafe { buf.read(start, len - start, |b| next.write(0, b)) };
                        // SAFETY: we are the producer and hold `tx`; `buf` is not used again
                        // before it is read anew below.
                        let full = unsafe { self.buf.replace(next) };
                        // SAFETY: the producer, as above.
                        buf = unsafe { self.own_buffer() };
                        if let Some(full) = full {
                            sink.hand_over(full.into_bytes(), sent.bytes..start, count);
                        }
                    }
                    None => {
                        if pending > 0 {
                            // SAFETY: `[sent, start)` is published (`start` is `committed`)
                            // and nobody else writes it; we hold `tx`, so no sender reads it
                            // meanwhile either.
                            unsafe {
                                buf.read(sent.bytes, start - sent.bytes, |b| sink.send(b, count))
                            };
                        }
                        // SAFETY: `start <= len <= cap`: both ranges lie in `buf`. Holding
                        // `tx`, we may overwrite the published bytes: no sender reads without
                        // it.
                        unsafe { buf.move_to_front(start, len - start) };
                    }
                }
                len -= start;
                start = 0;
                published = 0;
                *sent = Sent::default();
                self.sent_hint.store(0, Ordering::Relaxed);
                self.committed.store(0, Ordering::Relaxed);
            }
            if n > cap - len {
                let mut v = Vec::with_capacity(len + n);
                // SAFETY: `[0, len)` holds this call's unpublished frames (`start` is 0 here):
                // written by us and read by nobody else.
                unsafe { buf.read(0, len, |b| v.extend_from_slice(b)) };
                v.extend_from_slice(&h);
                v.extend_from_slice(m);
                spill = Some(v);
                len = 0;
                continue;
            }
            // SAFETY: `len + n <= cap` and `len >= committed`: unpublished bytes that only the
            // producer touches.
            unsafe {
                buf.write(len, &h);
                buf.write(len + h.len(), m);
            }
            len += n;
        }
        self.messages
            .store(self.messages() + done.messages, Ordering::Relaxed);
        // Every frame of this call is in the spill, or unpublished in the buffer.
        let count = u32::try_from(done.messages).unwrap_or(u32::MAX);
        match spill {
            Some(v) => {
                // `start` is 0: nothing published waits before these frames.
                let _sent = self.lock_tx();
                sink.send(&v, count);
                done.sent = true;
            }
            None => {
                let committed = pack(len, published + count);
                self.committed.store(committed, Ordering::Release)
            }
        }
        Ok(done)
    }
}

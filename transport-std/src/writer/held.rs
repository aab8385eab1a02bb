//! The acknowledged writer's window: the batches sent and not yet acknowledged by the
//! listener, most of them in the very buffers they were sent from.
//!
//! A lane's full buffer (up to 64 KiB of frames, the hot path) is handed over whole and the
//! lane continues in a spare one: the frames are not copied again. Other batches (the
//! flusher's sends of part of a lane, `send`'s, a batch larger than a lane) are copied into a
//! ring beside them. Lane buffers of acknowledged batches become the spares.
//!
//! framing's [`Window`] alone would copy every batch into its ring; measured on the bench,
//! that copy was most of what the acknowledged writer cost over the plain one
//! (docs/PERFORMANCE.md).

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use buffstreams_framing::acked::{Batch, Batches, QueueError, RECORD_LEN, Window};

use crate::sync::relock;

/// A buffer a batch was sent from, shared by the window and the thread writing it out.
pub(crate) type Chunk = Arc<Box<[u8]>>;

/// Lane buffers of acknowledged batches, for the lanes to continue in: kept while they and
/// the window's buffers together stay within the window's bytes (acknowledgements free lanes
/// in bursts, as many as the socket buffers held; without them each would be allocated anew
/// and zeroed, which measured as much as the copy it replaces).
#[derive(Debug)]
pub(crate) struct Spares {
    kept: Mutex<Vec<Box<[u8]>>>,
    /// The lanes' buffer size: the only size kept.
    len: usize,
    bound: usize,
}

impl Spares {
    /// Spares for lanes of `len` bytes and a window of `bound` bytes.
    pub(crate) fn new(len: usize, bound: usize) -> Self {
        Self {
            kept: Mutex::new(Vec::new()),
            len,
            bound,
        }
    }

    /// A buffer of `len` bytes (of whatever they held before): a spare if it is a lane's
    /// size, else a new one.
    pub(crate) fn take(&self, len: usize) -> Box<[u8]> {
        let spare = (len == self.len)
            .then(|| relock(&self.kept).pop())
            .flatten();
        spare.unwrap_or_else(|| vec![0; len].into_boxed_slice())
    }

    /// Keeps `chunk` as a spare if it is a lane's buffer, nobody else holds it, and it fits
    /// beside the `held` bytes of buffers still in the window (else it is freed).
    pub(crate) fn recycle(&self, chunk: Chunk, held: usize) {
        if chunk.len() != self.len {
            return;
        }
        if let Some(b) = Arc::into_inner(chunk) {
            let mut spares = relock(&self.kept);
            let kept = spares.len().saturating_mul(self.len);
            if held.saturating_add(kept).saturating_add(b.len()) <= self.bound {
                spares.push(b);
            }
        }
    }
}

/// One batch, in wire order.
#[derive(Debug)]
enum Kept {
    /// Copied into the ring of copies: its batch there.
    Copied(Batch),
    /// Frames `range` of a buffer kept as it is, `count` of them.
    Buffer {
        chunk: Chunk,
        range: Range<usize>,
        count: u32,
    },
}

impl Kept {
    fn count(&self) -> u32 {
        match self {
            Self::Copied(b) => b.count,
            Self::Buffer { count, .. } => *count,
        }
    }

    fn len(&self) -> usize {
        match self {
            Self::Copied(b) => b.len,
            Self::Buffer { range, .. } => range.len(),
        }
    }

    /// The memory it holds against the window's bytes.
    fn memory(&self) -> usize {
        match self {
            Self::Copied(b) => b.len.saturating_add(RECORD_LEN),
            Self::Buffer { chunk, .. } => chunk.len(),
        }
    }
}

/// The window: batches in wire order, each a lane's buffer kept as it is or a copy in a ring
/// (framing's [`Window`] over a `Vec`: copies cost no allocation each, and leave in the order
/// they came, as the batches do). Bounded by the memory of both (a handed-over lane counts
/// whole, however little of it is the batch) and by messages.
///
/// A batch's position ([`Batch::at`]) counts the batches pushed before it.
#[derive(Debug)]
pub(crate) struct Held {
    batches: VecDeque<Kept>,
    copies: Window<Vec<u8>>,
    /// The position of the oldest batch.
    first: usize,
    messages: u64,
    frame_bytes: usize,
    /// Bytes held: the buffers kept, and the copies with their records.
    memory: usize,
    max_bytes: usize,
    max_messages: u64,
    spares: Arc<Spares>,
}

impl Held {
    /// A window of at most `max_bytes` of buffers and `max_messages` messages; buffers of
    /// acknowledged batches go to `spares`.
    pub(crate) fn new(max_bytes: usize, max_messages: u64, spares: Arc<Spares>) -> Self {
        Self {
            batches: VecDeque::new(),
            copies: Window::new(Vec::new(), max_bytes, u64::MAX),
            first: 0,
            messages: 0,
            frame_bytes: 0,
            memory: 0,
            max_bytes,
            max_messages,
            spares,
        }
    }

    /// Why a batch of `count` messages holding `memory` bytes cannot join now (`None`: it
    /// can).
    fn refusal(&self, memory: usize, count: u32) -> Option<QueueError> {
        if count == 0 || memory > self.max_bytes || u64::from(count) > self.max_messages {
            return Some(QueueError::TooLarge);
        }
        let messages = self.messages.saturating_add(u64::from(count));
        let bytes = self.memory.saturating_add(memory);
        (messages > self.max_messages || bytes > self.max_bytes).then_some(QueueError::Full)
    }

    /// Appends the frames `range` of `chunk` (`count` whole frames) as one batch, keeping
    /// the buffer rather than copying it.
    ///
    /// # Errors
    /// As [`Batches::push_with`]; then `chunk` is dropped.
    pub(crate) fn push_chunk(
        &mut self,
        chunk: Chunk,
        range: Range<usize>,
        count: u32,
    ) -> Result<Batch, QueueError> {
        if range.start > range.end || range.end > chunk.len() {
            return Err(QueueError::TooLarge);
        }
        if let Some(e) = self.refusal(chunk.len(), count) {
            return Err(e);
        }
        Ok(self.push(Kept::Buffer {
            chunk,
            range,
            count,
        }))
    }

    fn push(&mut self, kept: Kept) -> Batch {
        let batch = Batch {
            at: self.first.wrapping_add(self.batches.len()),
            count: kept.count(),
            len: kept.len(),
        };
        self.messages = self.messages.saturating_add(u64::from(batch.count));
        self.frame_bytes = self.frame_bytes.saturating_add(batch.len);
        self.memory = self.memory.saturating_add(kept.memory());
        self.batches.push_back(kept);
        batch
    }

    fn batch(&self, i: usize) -> Option<Batch> {
        self.batches.get(i).map(|k| Batch {
            at: self.first.wrapping_add(i),
            count: k.count(),
            len: k.len(),
        })
    }
}

impl Batches for Held {
    fn capacity(&self) -> usize {
        self.max_bytes
    }

    fn messages(&self) -> u64 {
        self.messages
    }

    fn frame_bytes(&self) -> usize {
        self.frame_bytes
    }

    fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }

    fn has_room(&self, len: usize, count: u32) -> bool {
        self.refusal(len.saturating_add(RECORD_LEN), count)
            .is_none()
            && self.copies.has_room(len, count)
    }

    /// A copy, in the ring of copies.
    fn push_with(
        &mut self,
        len: usize,
        count: u32,
        fill: impl FnOnce(&mut [u8]),
    ) -> Result<Batch, QueueError> {
        if let Some(e) = self.refusal(len.saturating_add(RECORD_LEN), count) {
            return Err(e);
        }
        // The ring may lack room where the memory does not (its free space is in two pieces):
        // `Full` then, until acknowledgements free its oldest copies.
        let copied = self.copies.push_with(len, count, fill)?;
        Ok(self.push(Kept::Copied(copied)))
    }

    fn tail(&self) -> Option<Batch> {
        self.batch(self.batches.len().checked_sub(1)?)
    }

    fn front(&self) -> Option<Batch> {
        self.batch(0)
    }

    fn after(&self, batch: &Batch) -> Option<Batch> {
        self.batch(batch.at.wrapping_sub(self.first).checked_add(1)?)
    }

    fn frames(&self, batch: &Batch, skip: usize) -> &[u8] {
        match self.batches.get(batch.at.wrapping_sub(self.first)) {
            Some(Kept::Copied(b)) => self.copies.frames(b, skip),
            Some(Kept::Buffer { chunk, range, .. }) => chunk
                .get(range.start.saturating_add(skip)..range.end)
                .unwrap_or_default(),
            None => &[],
        }
    }

    fn pop_front(&mut self) {
        let Some(k) = self.batches.pop_front() else {
            return;
        };
        self.first = self.first.wrapping_add(1);
        self.messages = self.messages.saturating_sub(u64::from(k.count()));
        self.frame_bytes = self.frame_bytes.saturating_sub(k.len());
        self.memory = self.memory.saturating_sub(k.memory());
        match k {
            // Copies leave the ring in the order they came: this one is its oldest.
            Kept::Copied(_) => self.copies.pop_front(),
            Kept::Buffer { chunk, .. } => self.spares.recycle(chunk, self.memory),
        }
    }

    fn clear(&mut self) {
        while !self.batches.is_empty() {
            self.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use buffstreams_framing::acked::QueueError;
    use buffstreams_framing::harness::acked::{self, Action, Setup, Sim, batches as contents};
    use proptest::prelude::*;

    fn held(max_bytes: usize, max_messages: u64) -> Held {
        Held::new(
            max_bytes,
            max_messages,
            Arc::new(Spares::new(64, max_bytes)),
        )
    }

    fn chunk(bytes: &[u8], pad: usize) -> (Chunk, Range<usize>) {
        let mut b = vec![0xee; pad];
        b.extend_from_slice(bytes);
        b.extend(std::iter::repeat_n(0xdd, pad));
        (Arc::new(b.into_boxed_slice()), pad..pad + bytes.len())
    }

    #[test]
    fn batches_come_back_in_order_with_their_ranges_and_leave_from_the_front() {
        let mut w = held(1000, 100);
        let (c, r) = chunk(&[1; 10], 4);
        w.push_chunk(c, r, 2).unwrap();
        w.push_with(3, 1, |b| b.copy_from_slice(&[2, 2, 2]))
            .unwrap();
        let (c, r) = chunk(&[3; 5], 0);
        let third = w.push_chunk(c, r, 5).unwrap();
        assert_eq!(w.tail(), Some(third));
        assert_eq!(
            contents(&w),
            vec![(2, vec![1; 10]), (1, vec![2; 3]), (5, vec![3; 5])]
        );
        assert_eq!(
            (w.messages(), w.frame_bytes(), w.memory),
            (8, 18, 18 + 3 + RECORD_LEN + 5)
        );
        assert_eq!(w.frames(&third, 2), &[3, 3, 3]);
        w.pop_front();
        assert_eq!(contents(&w), vec![(1, vec![2; 3]), (5, vec![3; 5])]);
        assert_eq!(w.frames(&third, 0), &[3; 5], "positions outlive the pop");
        assert_eq!(
            (w.messages(), w.frame_bytes(), w.memory),
            (6, 8, 3 + RECORD_LEN + 5)
        );
        w.clear();
        assert!(w.is_empty() && w.front().is_none() && w.tail().is_none());
        assert_eq!((w.messages(), w.frame_bytes(), w.memory), (0, 0, 0));
        assert_eq!(
            w.frames(&third, 0),
            &[] as &[u8],
            "a batch gone reads as nothing"
        );
    }

    #[test]
    fn limits_count_the_buffers_memory_and_the_messages() {
        let mut w = held(64, 10);
        // 10 bytes of frames in a 30-byte buffer: 30 count.
        let (c, r) = chunk(&[1; 10], 10);
        w.push_chunk(c, r, 1).unwrap();
        let (c, r) = chunk(&[1; 10], 13);
        assert_eq!(w.push_chunk(c, r, 1), Err(QueueError::Full), "30 + 36 > 64");
        let (c, r) = chunk(&[1; 10], 30);
        assert_eq!(w.push_chunk(c, r, 1), Err(QueueError::TooLarge), "70 > 64");
        assert_eq!(
            w.push_with(5, 10, |_| ()),
            Err(QueueError::Full),
            "11 messages"
        );
        assert_eq!(w.push_with(5, 11, |_| ()), Err(QueueError::TooLarge));
        assert_eq!(w.push_with(5, 0, |_| ()), Err(QueueError::TooLarge));
        let (c, _) = chunk(&[1; 10], 1);
        assert_eq!(
            w.push_chunk(c, 5..20, 1),
            Err(QueueError::TooLarge),
            "past the end"
        );
        assert!(w.has_room(26, 9) && !w.has_room(27, 1) && !w.has_room(1, 10));
        assert_eq!(
            contents(&w),
            vec![(1, vec![1; 10])],
            "refusals change nothing"
        );
    }

    fn buffer(byte: u8) -> Chunk {
        Arc::new(vec![byte; 64].into_boxed_slice())
    }

    #[test]
    fn acknowledged_buffers_become_spares_unless_still_shared() {
        let spares = Arc::new(Spares::new(64, 1 << 20));
        let mut w = Held::new(1 << 20, 100, spares.clone());
        let kept = buffer(7);
        let shared = kept.clone();
        w.push_chunk(kept, 0..64, 1).unwrap();
        w.push_chunk(buffer(8), 0..64, 1).unwrap();
        w.pop_front(); // still held by `shared` (a write in progress): not kept
        w.pop_front();
        assert_eq!(
            &*spares.take(64),
            &[8u8; 64],
            "the buffer comes back as a spare"
        );
        assert_eq!(&*spares.take(64), &[0u8; 64], "no spare left: a new buffer");
        drop(shared);
        assert_eq!(spares.take(32).len(), 32);
    }

    #[test]
    fn copies_share_a_ring_that_acknowledgements_empty() {
        let mut w = held(64, 100);
        let copy = |w: &mut Held, byte: u8| w.push_with(20, 1, |b| b.fill(byte));
        copy(&mut w, 1).unwrap(); // 28 bytes with the ring's record
        copy(&mut w, 2).unwrap();
        assert_eq!(copy(&mut w, 3), Err(QueueError::Full), "56 + 28 > 64");
        let (c, r) = chunk(&[4; 8], 0);
        w.push_chunk(c, r, 1).unwrap(); // a buffer beside them: 64 in all
        w.pop_front();
        w.pop_front();
        copy(&mut w, 5).unwrap();
        copy(&mut w, 6).unwrap();
        assert_eq!(
            contents(&w),
            vec![(1, vec![4; 8]), (1, vec![5; 20]), (1, vec![6; 20])]
        );
        w.clear();
        for byte in 7..9 {
            copy(&mut w, byte).unwrap();
        }
        assert_eq!(w.memory, 56);
    }

    #[test]
    fn only_lane_sized_buffers_are_kept() {
        let spares = Arc::new(Spares::new(64, 1 << 20));
        let mut w = Held::new(1 << 20, 100, spares.clone());
        w.push_with(3, 1, |b| b.copy_from_slice(&[1, 2, 3]))
            .unwrap(); // a copy
        w.push_chunk(buffer(9), 0..64, 1).unwrap();
        w.clear();
        assert_eq!(relock(&spares.kept).len(), 1, "the copy is freed");
        assert_eq!(&*spares.take(64), &[9u8; 64]);
    }

    #[test]
    fn spares_and_the_window_together_stay_within_its_bytes() {
        let spares = Arc::new(Spares::new(64, 200));
        let mut w = Held::new(200, 100, spares.clone());
        for byte in 1..=3 {
            w.push_chunk(buffer(byte), 0..64, 1).unwrap();
        }
        w.pop_front(); // 128 held + 64 kept
        w.pop_front(); // 64 held + 64 kept + 64 would be 192: kept
        w.push_chunk(buffer(4), 0..64, 1).unwrap();
        w.pop_front(); // 64 held + 128 kept + 64 would be 256: freed
        assert_eq!(&*spares.take(64), &[2u8; 64]);
        assert_eq!(&*spares.take(64), &[1u8; 64]);
        assert_eq!(&*spares.take(64), &[0u8; 64], "the third was freed");
    }

    /// framing's harness (cuts at any byte, restarts, lost acks, full windows, time jumps,
    /// give-ups) over this store, its batches handed over in buffers with bytes around them
    /// as lanes have: every message delivered or given up, in order, repeats marked.
    fn run(setup: Setup, script: &[Action]) -> acked::Report {
        Sim::run_with(setup, script, |setup| {
            let w = held(setup.window_bytes, setup.window_messages);
            Sim::with_store(setup, w, |s, frames, count| {
                let (c, r) = chunk(frames, frames.len() % 5);
                s.queue_in(|w| w.push_chunk(c, r, count))
            })
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(acked::cases(256)))]

        #[test]
        fn the_sender_over_held_buffers_loses_and_repeats_nothing_unmarked(
            sizes in any::<[u8; 4]>(),
            script in proptest::collection::vec(any::<u8>(), 0..600),
        ) {
            run(Setup::from_bytes(&sizes), &Action::script(&script));
        }
    }
}

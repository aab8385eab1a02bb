//! The acknowledged writer's window: each batch kept in the buffer it was sent from, until the
//! listener acknowledges it.
//!
//! A lane's full buffer (up to 64 KiB of frames, the hot path) is handed over whole and the
//! lane continues in a spare one: the frames are not copied again. Other batches (the
//! flusher's sends of part of a lane, a batch larger than a lane) are copied into a buffer of
//! their own. Buffers of acknowledged batches become the spares.
//!
//! framing's [`Window`](buffstreams_framing::acked::Window) would copy every batch into its
//! ring; measured on the bench, that copy was most of what the acknowledged writer cost over
//! the plain one (docs/PERFORMANCE.md).

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use buffstreams_framing::acked::{Batch, Batches, QueueError};

use crate::sync::relock;

/// A buffer a batch was sent from, shared by the window and the thread writing it out.
pub(crate) type Chunk = Arc<Box<[u8]>>;

/// Buffers of acknowledged batches, for the lanes to continue in: kept while they and the
/// window's buffers together stay within the window's bytes (acknowledgements free lanes in
/// bursts, as many as the socket buffers held; without them each would be allocated anew and
/// zeroed, which measured as much as the copy it replaces).
#[derive(Debug)]
pub(crate) struct Spares {
    kept: Mutex<Vec<Box<[u8]>>>,
    bound: usize,
}

impl Spares {
    /// Spares for a window of `bound` bytes.
    pub(crate) fn new(bound: usize) -> Self {
        Self {
            kept: Mutex::new(Vec::new()),
            bound,
        }
    }

    /// A buffer of `len` bytes (of whatever they held before): a spare, or a new one.
    pub(crate) fn take(&self, len: usize) -> Box<[u8]> {
        let spare = {
            let mut spares = relock(&self.kept);
            let i = spares.iter().rposition(|b| b.len() == len);
            i.map(|i| spares.swap_remove(i))
        };
        spare.unwrap_or_else(|| vec![0; len].into_boxed_slice())
    }

    /// Keeps `chunk` as a spare if nobody else holds it and it fits beside the `held` bytes
    /// of buffers still in the window (else it is freed).
    pub(crate) fn recycle(&self, chunk: Chunk, held: usize) {
        if let Some(b) = Arc::into_inner(chunk) {
            let mut spares = relock(&self.kept);
            let kept: usize = spares.iter().map(|s| s.len()).sum();
            if held.saturating_add(kept).saturating_add(b.len()) <= self.bound {
                spares.push(b);
            }
        }
    }
}

/// One batch: frames `range` of `chunk`, `count` of them.
#[derive(Debug)]
struct Kept {
    chunk: Chunk,
    range: Range<usize>,
    count: u32,
}

/// The window: batches in wire order, each in its own buffer. Bounded by the memory of those
/// buffers (a handed-over lane counts whole, however little of it is the batch) and by
/// messages.
///
/// A batch's position ([`Batch::at`]) counts the batches pushed before it.
#[derive(Debug)]
pub(crate) struct Held {
    batches: VecDeque<Kept>,
    /// The position of the oldest batch.
    first: usize,
    messages: u64,
    frame_bytes: usize,
    /// Bytes of the buffers held.
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
            first: 0,
            messages: 0,
            frame_bytes: 0,
            memory: 0,
            max_bytes,
            max_messages,
            spares,
        }
    }

    /// Why a batch of `len` bytes of frames in `memory` bytes of buffer, `count` of them,
    /// cannot join now (`None`: it can).
    fn refusal(&self, memory: usize, len: usize, count: u32) -> Option<QueueError> {
        if count == 0 || memory > self.max_bytes || u64::from(count) > self.max_messages {
            return Some(QueueError::TooLarge);
        }
        let messages = self.messages.saturating_add(u64::from(count));
        let bytes = self.memory.saturating_add(memory);
        (messages > self.max_messages || bytes > self.max_bytes || len > memory)
            .then_some(QueueError::Full)
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
        if let Some(e) = self.refusal(chunk.len(), range.len(), count) {
            return Err(e);
        }
        let batch = Batch {
            at: self.first.wrapping_add(self.batches.len()),
            count,
            len: range.len(),
        };
        self.messages = self.messages.saturating_add(u64::from(count));
        self.frame_bytes = self.frame_bytes.saturating_add(range.len());
        self.memory = self.memory.saturating_add(chunk.len());
        self.batches.push_back(Kept {
            chunk,
            range,
            count,
        });
        Ok(batch)
    }

    fn get(&self, batch: &Batch) -> Option<&Kept> {
        self.batches.get(batch.at.wrapping_sub(self.first))
    }

    fn batch(&self, i: usize) -> Option<Batch> {
        self.batches.get(i).map(|k| Batch {
            at: self.first.wrapping_add(i),
            count: k.count,
            len: k.range.len(),
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
        self.refusal(len, len, count).is_none()
    }

    /// A copy, in a buffer of its own.
    fn push_with(
        &mut self,
        len: usize,
        count: u32,
        fill: impl FnOnce(&mut [u8]),
    ) -> Result<Batch, QueueError> {
        if let Some(e) = self.refusal(len, len, count) {
            return Err(e);
        }
        let mut copy = vec![0; len].into_boxed_slice();
        fill(&mut copy);
        self.push_chunk(Arc::new(copy), 0..len, count)
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
        self.get(batch)
            .and_then(|k| k.chunk.get(k.range.start.saturating_add(skip)..k.range.end))
            .unwrap_or_default()
    }

    fn pop_front(&mut self) {
        let Some(k) = self.batches.pop_front() else {
            return;
        };
        self.first = self.first.wrapping_add(1);
        self.messages = self.messages.saturating_sub(u64::from(k.count));
        self.frame_bytes = self.frame_bytes.saturating_sub(k.range.len());
        self.memory = self.memory.saturating_sub(k.chunk.len());
        self.spares.recycle(k.chunk, self.memory);
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
        Held::new(max_bytes, max_messages, Arc::new(Spares::new(max_bytes)))
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
            (8, 18, 18 + 3 + 5)
        );
        assert_eq!(w.frames(&third, 2), &[3, 3, 3]);
        w.pop_front();
        assert_eq!(contents(&w), vec![(1, vec![2; 3]), (5, vec![3; 5])]);
        assert_eq!(w.frames(&third, 0), &[3; 5], "positions outlive the pop");
        assert_eq!((w.messages(), w.frame_bytes(), w.memory), (6, 8, 8));
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
        assert!(w.has_room(34, 9) && !w.has_room(35, 1) && !w.has_room(1, 10));
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
        let spares = Arc::new(Spares::new(1 << 20));
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
        assert_eq!(
            spares.take(32).len(),
            32,
            "only buffers of the size asked for"
        );
    }

    #[test]
    fn spares_and_the_window_together_stay_within_its_bytes() {
        let spares = Arc::new(Spares::new(200));
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

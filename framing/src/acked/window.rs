//! The sender's window: the frames it sent and the listener has not acknowledged yet, in the
//! caller's storage, in the order they go on the wire.
//!
//! ```text
//!  storage:  | record | frames of batch 1 | record | frames of batch 2 | ...     (free) ...
//!  record:   count (u32 LE)  len (u32 LE)            8 bytes before each batch's frames
//! ```
//!
//! A batch is whatever the transport queued in one call (one message on firmware, up to 64 KiB
//! of frames on std); it stays contiguous, so it can be written in one piece and a batch's
//! messages are counted once, by whoever framed them. The storage is used as a ring of two
//! regions (a "bip buffer"): batches append after the newest one, and once the oldest have
//! been acknowledged and there is room at the start, the next batch starts there rather than
//! making a growable storage (`Vec`) grow, so its memory follows what is in flight.

use crate::storage::Storage;

/// Bytes of the record before each batch's frames.
pub const RECORD_LEN: usize = 8;

/// Why a batch could not join the window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum QueueError {
    /// No room now: wait for acknowledgements (or refuse the message).
    Full,
    /// The batch can never fit: it is larger than the whole window, or empty of messages.
    TooLarge,
}

impl core::fmt::Display for QueueError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Full => f.write_str("the acknowledgement window is full"),
            Self::TooLarge => f.write_str("the batch is larger than the acknowledgement window"),
        }
    }
}

impl core::error::Error for QueueError {}

/// Frames sent and not yet acknowledged, in storage `S` (an array on firmware, a `Vec<u8>`
/// on std, which grows only as far as the batches in flight need).
///
/// Bounded by bytes (the storage's capacity and `max_bytes`, [`RECORD_LEN`] per batch
/// included) and by messages.
#[derive(Debug)]
pub struct Window<S> {
    storage: S,
    /// The storage's usable length.
    limit: usize,
    max_messages: u64,
    /// The older region `[start, end)`, and the newer one `[0, wrapped_end)` once the ring
    /// has wrapped (`wrapped`).
    start: usize,
    end: usize,
    wrapped: bool,
    wrapped_end: usize,
    /// How far the storage has ever been written: growing past it costs a growable storage
    /// memory, wrapping does not.
    high: usize,
    /// The newest batch (kept here, so growing it per message reads no record back).
    tail: Option<Batch>,
    messages: u64,
    frame_bytes: usize,
}

/// One batch in a sender's window: where its store keeps it, and what it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Batch {
    /// Where the store keeps it: [`Window`]'s byte offset of its record, another store's own
    /// position. The sender only compares it, to tell one batch from another.
    pub at: usize,
    /// Its messages (whole frames).
    pub count: u32,
    /// Its frames' bytes.
    pub len: usize,
}

/// Where a [`Sender`](super::Sender) keeps the frames it queued and the listener has not
/// acknowledged yet: batches, in the order they go on the wire.
///
/// [`Window`] is the store for firmware and most transports: a ring in caller storage that
/// each batch is copied into. A transport that owns its send buffers can keep those instead
/// and copy nothing: transport-std hands its lanes' full 64 KiB buffers over, and queues them
/// with [`Sender::queue_in`](super::Sender::queue_in).
///
/// A store's batches are exactly what was pushed (and grown), in order; `pop_front` and
/// `clear` drop from the front only.
pub trait Batches {
    /// The most bytes it can hold (the sender grows its newest batch up to an eighth of it).
    fn capacity(&self) -> usize;
    /// Messages it holds.
    fn messages(&self) -> u64;
    /// Bytes of frames it holds.
    fn frame_bytes(&self) -> usize;
    /// Whether it holds nothing.
    fn is_empty(&self) -> bool;
    /// Whether a batch of `len` bytes and `count` messages would be pushed now.
    fn has_room(&self, len: usize, count: u32) -> bool;
    /// Appends a batch of `len` bytes (`count` whole frames) that `fill` writes in place.
    ///
    /// # Errors
    /// [`QueueError::Full`] when there is no room now, [`QueueError::TooLarge`] when there
    /// never will be (or `count` is 0).
    fn push_with(
        &mut self,
        len: usize,
        count: u32,
        fill: impl FnOnce(&mut [u8]),
    ) -> Result<Batch, QueueError>;
    /// Appends `len` bytes (`count` whole frames) that `fill` writes in place to the newest
    /// batch, if it can grow so and stays under `max_len`; returns the batch as it now is.
    /// A store that cannot grow batches keeps the default, which never does.
    ///
    /// # Errors
    /// [`QueueError::Full`] when it does not grow (the sender pushes a new batch).
    fn extend_tail_with(
        &mut self,
        len: usize,
        count: u32,
        max_len: usize,
        fill: impl FnOnce(&mut [u8]),
    ) -> Result<Batch, QueueError> {
        let _ = (len, count, max_len, fill);
        Err(QueueError::Full)
    }
    /// The newest batch.
    fn tail(&self) -> Option<Batch>;
    /// The oldest batch.
    fn front(&self) -> Option<Batch>;
    /// The batch after `batch`, in wire order.
    fn after(&self, batch: &Batch) -> Option<Batch>;
    /// The frames of `batch`, from byte `skip` of them.
    fn frames(&self, batch: &Batch, skip: usize) -> &[u8];
    /// Drops the oldest batch.
    fn pop_front(&mut self);
    /// Drops every batch.
    fn clear(&mut self);
}

impl Batch {
    /// Where its frames start in the storage.
    pub(crate) fn frames_at(&self) -> usize {
        self.at.saturating_add(RECORD_LEN)
    }

    /// Where the next record may start.
    fn end(&self) -> usize {
        self.frames_at().saturating_add(self.len)
    }
}

impl<S: Storage> Window<S> {
    /// A window over `storage`, holding at most `max_bytes` bytes (records included; capped by
    /// the storage's capacity) and `max_messages` messages.
    ///
    /// ```
    /// use buffstreams_framing::acked::Window;
    ///
    /// let firmware = Window::new([0u8; 2048], usize::MAX, 64);
    /// assert_eq!(firmware.capacity(), 2048);
    /// let desktop = Window::new(Vec::new(), 8 << 20, 1 << 20); // grows as needed, up to 8 MiB
    /// assert_eq!(desktop.capacity(), 8 << 20);
    /// ```
    pub fn new(storage: S, max_bytes: usize, max_messages: u64) -> Self {
        let limit = storage.capacity().min(max_bytes);
        Self {
            storage,
            limit,
            max_messages,
            start: 0,
            end: 0,
            wrapped: false,
            wrapped_end: 0,
            high: 0,
            tail: None,
            messages: 0,
            frame_bytes: 0,
        }
    }

    /// The most bytes it can hold, records included.
    pub fn capacity(&self) -> usize {
        self.limit
    }

    /// Messages in the window.
    pub fn messages(&self) -> u64 {
        self.messages
    }

    /// Bytes of frames in the window (records not counted).
    pub fn frame_bytes(&self) -> usize {
        self.frame_bytes
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.messages == 0 && self.start == self.end && !self.wrapped
    }

    /// Whether a batch of `len` bytes and `count` messages would join now.
    pub fn has_room(&self, len: usize, count: u32) -> bool {
        self.place(len, count).is_ok()
    }

    /// Where a batch of `len` bytes of `count` messages would go.
    fn place(&self, len: usize, count: u32) -> Result<usize, QueueError> {
        let need = len.checked_add(RECORD_LEN).ok_or(QueueError::TooLarge)?;
        if count == 0 || need > self.limit || u64::from(count) > self.max_messages {
            return Err(QueueError::TooLarge);
        }
        if self.messages.saturating_add(u64::from(count)) > self.max_messages {
            return Err(QueueError::Full);
        }
        let fits_at_end = |at: usize| at.checked_add(need).is_some_and(|e| e <= self.limit);
        if self.wrapped {
            // Between the newer region's end and the older region's start.
            return match self.wrapped_end.checked_add(need) {
                Some(e) if e <= self.start => Ok(self.wrapped_end),
                _ => Err(QueueError::Full),
            };
        }
        let wraps = need <= self.start;
        let grows = self.end.saturating_add(need) > self.high;
        if fits_at_end(self.end) && !(grows && wraps) {
            Ok(self.end)
        } else if wraps {
            Ok(0)
        } else {
            Err(QueueError::Full)
        }
    }

    /// The batch whose record starts at `at`, if one does.
    fn batch_at(&self, at: usize) -> Option<Batch> {
        let in_older = at >= self.start && at < self.end;
        let in_newer = self.wrapped && at < self.wrapped_end;
        if !(in_older || in_newer) {
            return None;
        }
        let record = self
            .storage
            .filled(at.checked_add(RECORD_LEN)?)?
            .get(at..)?;
        let count = u32::from_le_bytes(record.get(..4)?.try_into().ok()?);
        let len = u32::from_le_bytes(record.get(4..8)?.try_into().ok()?);
        Some(Batch {
            at,
            count,
            len: usize::try_from(len).ok()?,
        })
    }
}

// The counts and checks are also inherent methods (callable without the trait in scope):
// the trait's are those.
impl<S: Storage> Batches for Window<S> {
    fn capacity(&self) -> usize {
        Window::capacity(self)
    }

    fn messages(&self) -> u64 {
        Window::messages(self)
    }

    fn frame_bytes(&self) -> usize {
        Window::frame_bytes(self)
    }

    fn is_empty(&self) -> bool {
        Window::is_empty(self)
    }

    fn has_room(&self, len: usize, count: u32) -> bool {
        Window::has_room(self, len, count)
    }

    /// Appends a batch of `len` bytes (`count` whole frames) that `fill` writes in place.
    ///
    /// # Errors
    /// As [`Batches::push_with`].
    fn push_with(
        &mut self,
        len: usize,
        count: u32,
        fill: impl FnOnce(&mut [u8]),
    ) -> Result<Batch, QueueError> {
        let at = self.place(len, count)?;
        let batch = Batch { at, count, len };
        let end = batch.end();
        let room = self.storage.slot(end).ok_or(QueueError::TooLarge)?;
        let (record, body) = room
            .get_mut(at..end)
            .ok_or(QueueError::TooLarge)?
            .split_at_mut(RECORD_LEN);
        let len32 = u32::try_from(len).map_err(|_| QueueError::TooLarge)?;
        let mut head = [0u8; RECORD_LEN];
        let (c, l) = head.split_at_mut(4);
        c.copy_from_slice(&count.to_le_bytes());
        l.copy_from_slice(&len32.to_le_bytes());
        record.copy_from_slice(&head);
        fill(body);
        if at == 0 && (self.end > 0 || self.wrapped) && self.start != self.end {
            self.wrapped = true;
            self.wrapped_end = end;
        } else if self.wrapped {
            self.wrapped_end = end;
        } else {
            if self.start == self.end {
                self.start = at;
            }
            self.end = end;
        }
        self.high = self.high.max(end);
        self.tail = Some(batch);
        self.messages = self.messages.saturating_add(u64::from(count));
        self.frame_bytes = self.frame_bytes.saturating_add(len);
        Ok(batch)
    }

    /// The newest batch.
    #[inline]
    fn tail(&self) -> Option<Batch> {
        self.tail
    }

    /// Appends `len` bytes (`count` whole frames) that `fill` writes in place to the newest
    /// batch, if there is room right after it and it stays under `max_len`. Returns the
    /// batch as it now is.
    ///
    /// # Errors
    /// [`QueueError::Full`] when it cannot grow so (the caller starts a new batch).
    #[inline]
    fn extend_tail_with(
        &mut self,
        len: usize,
        count: u32,
        max_len: usize,
        fill: impl FnOnce(&mut [u8]),
    ) -> Result<Batch, QueueError> {
        let tail = self.tail().ok_or(QueueError::Full)?;
        let grown = tail.len.checked_add(len).ok_or(QueueError::Full)?;
        let new_count = tail.count.checked_add(count).ok_or(QueueError::Full)?;
        let from = tail.end();
        let to = from.checked_add(len).ok_or(QueueError::Full)?;
        // The room after the newest batch: to the limit, or to the older region's start once
        // the ring has wrapped.
        let bound = if self.wrapped { self.start } else { self.limit };
        let over = self.messages.saturating_add(u64::from(count)) > self.max_messages;
        if count == 0 || grown > max_len || to > bound || over {
            return Err(QueueError::Full);
        }
        let (Ok(len32), Some(room)) = (u32::try_from(grown), self.storage.slot(to)) else {
            return Err(QueueError::Full);
        };
        let Some(room) = room.get_mut(tail.at..to) else {
            return Err(QueueError::Full);
        };
        let (record, rest) = room.split_at_mut(RECORD_LEN);
        let mut head = [0u8; RECORD_LEN];
        let (c, l) = head.split_at_mut(4);
        c.copy_from_slice(&new_count.to_le_bytes());
        l.copy_from_slice(&len32.to_le_bytes());
        record.copy_from_slice(&head);
        if let Some(body) = rest.get_mut(tail.len..) {
            fill(body);
        }
        if self.wrapped {
            self.wrapped_end = to;
        } else {
            self.end = to;
        }
        self.high = self.high.max(to);
        self.messages = self.messages.saturating_add(u64::from(count));
        self.frame_bytes = self.frame_bytes.saturating_add(len);
        let grown = Batch {
            at: tail.at,
            count: new_count,
            len: grown,
        };
        self.tail = Some(grown);
        Ok(grown)
    }

    /// The oldest batch.
    fn front(&self) -> Option<Batch> {
        self.batch_at(self.start)
    }

    /// The batch after `batch`, in wire order.
    fn after(&self, batch: &Batch) -> Option<Batch> {
        let next = batch.end();
        if self.wrapped && batch.at < self.wrapped_end {
            // In the newer region, which ends the ring.
            return (next < self.wrapped_end)
                .then(|| self.batch_at(next))
                .flatten();
        }
        if next < self.end {
            self.batch_at(next)
        } else if self.wrapped {
            self.batch_at(0)
        } else {
            None
        }
    }

    /// The frames of `batch`, from byte `skip` of them.
    fn frames(&self, batch: &Batch, skip: usize) -> &[u8] {
        let end = batch.end();
        self.storage
            .filled(end)
            .and_then(|b| b.get(batch.frames_at().saturating_add(skip)..end))
            .unwrap_or_default()
    }

    /// Drops the oldest batch.
    fn pop_front(&mut self) {
        let Some(front) = self.front() else {
            return;
        };
        self.start = front.end();
        self.messages = self.messages.saturating_sub(u64::from(front.count));
        self.frame_bytes = self.frame_bytes.saturating_sub(front.len);
        if self.start >= self.end {
            if self.wrapped {
                self.start = 0;
                self.end = self.wrapped_end;
                self.wrapped = false;
                self.wrapped_end = 0;
            } else {
                self.start = 0;
                self.end = 0;
                self.tail = None;
            }
        }
    }

    /// Drops everything.
    fn clear(&mut self) {
        self.tail = None;
        self.start = 0;
        self.end = 0;
        self.wrapped = false;
        self.wrapped_end = 0;
        self.messages = 0;
        self.frame_bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    impl<S: Storage> Window<S> {
        /// Appends `parts`, concatenated, as one batch of `count` frames.
        fn push(&mut self, parts: &[&[u8]], count: u32) -> Result<Batch, QueueError> {
            let len = parts.iter().map(|p| p.len()).sum();
            self.push_with(len, count, |mut body| {
                for part in parts {
                    let (here, rest) = body.split_at_mut(part.len());
                    here.copy_from_slice(part);
                    body = rest;
                }
            })
        }
    }

    use crate::harness::acked::batches as contents;

    #[test]
    fn batches_come_back_in_order_across_the_wrap() {
        let mut w = Window::new([0u8; 64], usize::MAX, 100);
        w.push(&[&[1; 10]], 1).unwrap(); // 0..18
        w.push(&[&[2; 10]], 2).unwrap(); // 18..36
        w.push(&[&[3; 10]], 3).unwrap(); // 36..54
        assert_eq!(w.push(&[&[4; 10]], 1), Err(QueueError::Full));
        w.pop_front();
        w.push(&[&[4; 10]], 4).unwrap(); // wraps: 0..18
        assert_eq!(
            contents(&w),
            [
                (2, [2; 10].to_vec()),
                (3, [3; 10].to_vec()),
                (4, [4; 10].to_vec())
            ]
        );
        assert_eq!((w.messages(), w.frame_bytes()), (9, 30));
        assert_eq!(w.push(&[&[5; 1]], 1), Err(QueueError::Full)); // 18 + 9 > 18
        w.pop_front();
        w.push(&[&[5; 1]], 5).unwrap(); // 18..27, still before the older region's 36
        w.pop_front();
        w.pop_front();
        assert_eq!(contents(&w), [(5, [5].to_vec())]);
        w.pop_front();
        assert!(w.is_empty());
    }

    /// The newest batch is kept beside the storage so growing it reads no record back: after
    /// every change it must agree with the record in the storage, across the wrap.
    #[test]
    fn the_newest_batch_grows_in_place_and_agrees_with_its_record() {
        let mut w = Window::new([0u8; 64], usize::MAX, 100);
        let same = |w: &Window<[u8; 64]>| {
            let tail = w.tail().unwrap();
            assert_eq!(w.batch_at(tail.at), Some(tail));
        };
        w.push(&[&[1; 10]], 1).unwrap(); // 0..18
        let grown = w.extend_tail_with(6, 2, 64, |b| b.fill(2)).unwrap(); // 0..24
        assert_eq!((grown.count, grown.len), (3, 16));
        same(&w);
        w.push(&[&[3; 10]], 1).unwrap(); // 24..42
        w.extend_tail_with(4, 1, 64, |b| b.fill(4)).unwrap(); // 24..46
        same(&w);
        // Over `max_len`, or past the limit: the caller starts a new batch.
        assert_eq!(w.extend_tail_with(1, 1, 14, |_| {}), Err(QueueError::Full));
        assert_eq!(w.extend_tail_with(19, 1, 64, |_| {}), Err(QueueError::Full));
        w.pop_front(); // the older region starts at 24 now
        w.push(&[&[5; 8]], 1).unwrap(); // wraps rather than grows: 0..16
        w.extend_tail_with(4, 1, 64, |b| b.fill(6)).unwrap(); // 0..20
        same(&w);
        // The newer region may not grow into the older one.
        assert_eq!(w.extend_tail_with(5, 1, 64, |_| {}), Err(QueueError::Full));
        let mut third = [3u8; 14].to_vec();
        third[10..].fill(4);
        let mut fifth = [5u8; 12].to_vec();
        fifth[8..].fill(6);
        assert_eq!(contents(&w), [(2, third), (2, fifth)]);
        assert_eq!((w.messages(), w.frame_bytes()), (4, 26));
        w.pop_front();
        same(&w);
        w.pop_front();
        assert_eq!(w.tail(), None);
        assert!(w.is_empty());
    }

    #[test]
    fn a_growable_storage_wraps_rather_than_grows() {
        let mut w = Window::new(Vec::new(), 1 << 20, 1 << 20);
        for i in 0..1000u32 {
            w.push(&[&[i as u8; 100]], 1).unwrap();
            if w.messages() > 3 {
                w.pop_front();
            }
        }
        // Four batches in flight at most: the storage never needed more than a few.
        assert!(w.high <= 6 * 108, "grew to {}", w.high);
        assert_eq!(w.messages(), 3);
    }

    #[test]
    fn limits_are_enforced() {
        let mut w = Window::new([0u8; 32], usize::MAX, 3);
        assert_eq!(w.push(&[&[0; 25]], 1), Err(QueueError::TooLarge));
        assert_eq!(w.push(&[&[0; 4]], 0), Err(QueueError::TooLarge));
        assert_eq!(w.push(&[&[0; 4]], 4), Err(QueueError::TooLarge));
        w.push(&[&[0; 4]], 2).unwrap();
        assert_eq!(w.push(&[&[0; 4]], 2), Err(QueueError::Full));
        let mut v = Window::new(Vec::new(), 40, 10);
        assert_eq!(v.push(&[&[0; 40]], 1), Err(QueueError::TooLarge));
        v.push(&[&[0; 20]], 1).unwrap();
        assert_eq!(v.push(&[&[0; 20]], 1), Err(QueueError::Full));
    }
}

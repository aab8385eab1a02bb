//! The push-style, sans-io frame decoder.
//!
//! ```text
//! +---- header ----+------------ payload ------------+
//! | len (H format) |  len bytes (max_frame_len max)  |  ... next frame
//! +----------------+---------------------------------+
//! ```
//!
//! The contract: [`Decoder::feed`] never panics, never allocates, never reads or waits for
//! anything, and checks the declared length against the maximum before it stores a single
//! payload byte. Any cut of a stream into feeds yields the same frames and errors as one feed.

use core::marker::PhantomData;

use crate::config::{Config, Oversize};
use crate::error::DecodeError;
use crate::header::{LengthPrefix, MAX_HEADER_LEN, Parsed, max_payload};
use crate::storage::Storage;

/// What one [`Decoder::feed`] call produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Feed<'a> {
    /// Bytes of the input that were consumed; feed the rest again.
    pub consumed: usize,
    /// A complete frame or event, if one ended within the consumed bytes.
    pub event: Option<Event<'a>>,
}

/// A complete frame or a decoder event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Event<'a> {
    /// A complete payload: borrowed from the input when the frame lay wholly inside it,
    /// otherwise from the decoder's storage.
    Frame(&'a [u8]),
    /// An oversize frame was discarded under [`Oversize::Skip`]; its declared payload length.
    Skipped(u64),
}

/// A finished item, located without borrowing (the I/O helpers build the borrow afterwards).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Raw {
    /// Payload at `input[start..start + len]`.
    Input {
        start: usize,
        len: usize,
    },
    /// Payload in the storage's first `len` bytes.
    Stored(usize),
    Skipped(u64),
}

#[derive(Clone, Copy, Debug)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
enum State {
    /// Reading a header; `hdr[..hdr_len]` holds bytes of it that came in an earlier feed.
    Header,
    /// Assembling a payload of `len` bytes in storage; `filled` are there.
    Body { len: usize, filled: usize },
    /// Discarding an oversize payload.
    Skip { len: u64, remaining: u64 },
    /// Poisoned by an error until `reset`.
    Failed(DecodeError),
}

/// Incremental frame decoder for header format `H`, assembling split frames in storage `S`.
///
/// # Examples
/// ```
/// use buffstreams_framing::{BigEndian, Config, Decoder, Event};
///
/// let mut dec = Decoder::<BigEndian<4>, _>::new(Config::new(), [0u8; 64]);
/// let stream = [0, 0, 0, 2, b'h', b'i', 0, 0, 0, 3, b'y'];
/// let f = dec.feed(&stream).unwrap();
/// assert_eq!((f.consumed, f.event), (6, Some(Event::Frame(b"hi"))));
/// // The second frame is split: its start is kept in the storage.
/// let f = dec.feed(&stream[6..]).unwrap();
/// assert_eq!((f.consumed, f.event), (5, None));
/// let f = dec.feed(b"o!").unwrap();
/// assert_eq!(f.event, Some(Event::Frame(b"yo!")));
/// ```
pub struct Decoder<H, S> {
    config: Config,
    max: usize,
    state: State,
    hdr: [u8; MAX_HEADER_LEN],
    hdr_len: usize,
    storage: S,
    _format: PhantomData<fn() -> H>,
}

impl<H: LengthPrefix, S: Storage> Decoder<H, S> {
    /// Creates a decoder. The effective maximum payload length is the smallest of
    /// `config.max_frame_len()`, what `H` can express and `storage.capacity()`.
    pub fn new(config: Config, storage: S) -> Self {
        const { assert!(H::MAX_HEADER_LEN >= 1 && H::MAX_HEADER_LEN <= MAX_HEADER_LEN) };
        let expressible = max_payload::<H>(config.length_includes_header());
        let max = config
            .max_frame_len()
            .min(expressible)
            .min(storage.capacity());
        Self {
            config,
            max,
            state: State::Header,
            hdr: [0; MAX_HEADER_LEN],
            hdr_len: 0,
            storage,
            _format: PhantomData,
        }
    }

    /// Consumes bytes from `input` and returns at most one frame or event.
    ///
    /// Returns with `event: None` once all of `input` is consumed and no frame is complete;
    /// incomplete input is not an error. Otherwise call again with `&input[consumed..]`.
    ///
    /// # Errors
    /// A [`DecodeError`] when the stream is invalid. The decoder then stays failed (every later
    /// call returns the same error) until [`reset`](Self::reset).
    #[inline]
    pub fn feed<'a>(&'a mut self, input: &'a [u8]) -> Result<Feed<'a>, DecodeError> {
        let (consumed, raw) = self.step(input)?;
        let event = match raw {
            None => None,
            Some(raw) => Some(self.resolve(input, raw)?),
        };
        Ok(Feed { consumed, event })
    }

    /// Builds the borrowed event for `raw`, which `step` produced for `input`.
    #[inline(always)]
    pub(crate) fn resolve<'a>(
        &'a self,
        input: &'a [u8],
        raw: Raw,
    ) -> Result<Event<'a>, DecodeError> {
        match raw {
            Raw::Input { start, len } => start
                .checked_add(len)
                .and_then(|end| input.get(start..end))
                .map(Event::Frame)
                .ok_or(DecodeError::Storage),
            Raw::Stored(len) => self
                .storage
                .filled(len)
                .map(Event::Frame)
                .ok_or(DecodeError::Storage),
            Raw::Skipped(len) => Ok(Event::Skipped(len)),
        }
    }

    /// The state machine: consumes input and locates at most one finished item.
    #[inline(always)]
    pub(crate) fn step(&mut self, input: &[u8]) -> Result<(usize, Option<Raw>), DecodeError> {
        match self.state {
            State::Header if self.hdr_len == 0 => match H::parse(input) {
                Ok(Parsed::Complete { value, header_len }) => {
                    self.on_header(input, header_len, value, header_len)
                }
                Ok(Parsed::Incomplete) => self.stash_header(input),
                Err(e) => Err(self.fail(e)),
            },
            State::Header => self.continue_header(input),
            State::Body { len, filled } => self.continue_body(input, len, filled),
            State::Skip { len, remaining } => Ok(self.skip(input, 0, len, remaining)),
            State::Failed(e) => Err(e),
        }
    }

    /// Keeps the start of a header that the input cut off.
    fn stash_header(&mut self, input: &[u8]) -> Result<(usize, Option<Raw>), DecodeError> {
        if input.len() >= H::MAX_HEADER_LEN {
            // A format that wants more than its own maximum width is broken; never loop on it.
            return Err(self.fail(DecodeError::VarintOverflow));
        }
        for (d, s) in self.hdr.iter_mut().zip(input) {
            *d = *s;
        }
        self.hdr_len = input.len();
        Ok((input.len(), None))
    }

    #[cold]
    fn continue_header(&mut self, input: &[u8]) -> Result<(usize, Option<Raw>), DecodeError> {
        let have = self.hdr_len;
        let want = H::MAX_HEADER_LEN.saturating_sub(have);
        let take = want.min(input.len());
        let dst = self.hdr.get_mut(have..).unwrap_or_default();
        for (d, s) in dst.iter_mut().zip(input.iter().take(take)) {
            *d = *s;
        }
        let total = have.saturating_add(take).min(MAX_HEADER_LEN);
        let buf = self.hdr.get(..total).unwrap_or_default();
        match H::parse(buf) {
            Ok(Parsed::Complete { value, header_len }) => {
                // The header ends inside this input; bytes past it belong to the payload.
                let Some(from_input) = header_len.checked_sub(have).filter(|&n| n <= take) else {
                    return Err(self.fail(DecodeError::VarintOverflow));
                };
                self.hdr_len = 0;
                self.on_header(input, from_input, value, header_len)
            }
            Ok(Parsed::Incomplete) if total < H::MAX_HEADER_LEN => {
                self.hdr_len = total;
                Ok((take, None))
            }
            Ok(Parsed::Incomplete) => Err(self.fail(DecodeError::VarintOverflow)),
            Err(e) => Err(self.fail(e)),
        }
    }

    /// A header ended at `input[..pos]` and declared `value`.
    #[inline(always)]
    fn on_header(
        &mut self,
        input: &[u8],
        pos: usize,
        value: u64,
        header_len: usize,
    ) -> Result<(usize, Option<Raw>), DecodeError> {
        let declared = if self.config.length_includes_header() {
            match value.checked_sub(header_len as u64) {
                Some(v) => v,
                None => return Err(self.fail(DecodeError::LengthUnderflow)),
            }
        } else {
            value
        };
        let len = match usize::try_from(declared) {
            Ok(len) if len <= self.max => len,
            _ => {
                return match self.config.oversize() {
                    Oversize::Reject => Err(self.fail(DecodeError::FrameTooLong {
                        len: declared,
                        max: self.max,
                    })),
                    Oversize::Skip => Ok(self.skip(input, pos, declared, declared)),
                };
            }
        };
        let rest = input.get(pos..).unwrap_or_default();
        if len <= rest.len() {
            // Zero copy: the whole payload is in this input.
            self.state = State::Header;
            return Ok((pos + len, Some(Raw::Input { start: pos, len })));
        }
        self.state = State::Body { len, filled: 0 };
        let (n, raw) = self.continue_body(rest, len, 0)?;
        Ok((pos + n, raw))
    }

    fn continue_body(
        &mut self,
        input: &[u8],
        len: usize,
        filled: usize,
    ) -> Result<(usize, Option<Raw>), DecodeError> {
        let n = len.saturating_sub(filled).min(input.len());
        let upto = filled.saturating_add(n);
        // Ask only for the bytes that arrived: growable storage follows the data, never the
        // length a peer declared.
        let Some(dst) = self.storage.slot(upto).and_then(|s| s.get_mut(filled..)) else {
            return Err(self.fail(DecodeError::Storage));
        };
        for (d, s) in dst.iter_mut().zip(input) {
            *d = *s;
        }
        if upto >= len {
            self.state = State::Header;
            Ok((n, Some(Raw::Stored(len))))
        } else {
            self.state = State::Body { len, filled: upto };
            Ok((n, None))
        }
    }

    /// Discards oversize payload bytes from `input[pos..]`; never stores them.
    fn skip(&mut self, input: &[u8], pos: usize, len: u64, remaining: u64) -> (usize, Option<Raw>) {
        let avail = input.len().saturating_sub(pos);
        let n = usize::try_from(remaining).map_or(avail, |r| r.min(avail));
        let remaining = remaining.saturating_sub(n as u64);
        let consumed = pos.saturating_add(n);
        if remaining == 0 {
            self.state = State::Header;
            (consumed, Some(Raw::Skipped(len)))
        } else {
            self.state = State::Skip { len, remaining };
            (consumed, None)
        }
    }

    #[cold]
    fn fail(&mut self, e: DecodeError) -> DecodeError {
        self.state = State::Failed(e);
        self.hdr_len = 0;
        e
    }

    /// Forgets any partial frame and any error; the next byte fed starts a header.
    pub fn reset(&mut self) {
        self.state = State::Header;
        self.hdr_len = 0;
    }

    /// Whether bytes of an unfinished frame are held (a stream ending now is truncated).
    pub fn is_mid_frame(&self) -> bool {
        match self.state {
            State::Header => self.hdr_len > 0,
            State::Body { .. } | State::Skip { .. } => true,
            State::Failed(_) => false,
        }
    }

    /// The error this decoder failed with, if it did.
    pub fn error(&self) -> Option<DecodeError> {
        match self.state {
            State::Failed(e) => Some(e),
            _ => None,
        }
    }

    /// The effective maximum payload length.
    pub fn max_frame_len(&self) -> usize {
        self.max
    }

    /// The configuration this decoder was built with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Gives back the storage.
    pub fn into_storage(self) -> S {
        self.storage
    }
}

impl<H, S> core::fmt::Debug for Decoder<H, S> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Decoder")
            .field("config", &self.config)
            .field("max", &self.max)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

#[cfg(feature = "defmt")]
impl<H, S> defmt::Format for Decoder<H, S> {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(
            f,
            "Decoder {{ config: {}, max: {=usize}, state: {} }}",
            self.config,
            self.max,
            self.state
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::header::{BigEndian, BuffStreams, Varint32};

    #[test]
    fn read_empty_frame() {
        let mut d = Decoder::<BigEndian<4>, _>::new(Config::new(), [0u8; 8]);
        let f = d.feed(&[0, 0, 0, 0, 9]).unwrap();
        assert_eq!((f.consumed, f.event), (4, Some(Event::Frame(&[][..]))));
    }

    #[test]
    fn read_incomplete_head() {
        let mut d = Decoder::<BigEndian<4>, _>::new(Config::new(), [0u8; 8]);
        assert_eq!(
            d.feed(&[0, 0]).unwrap(),
            Feed {
                consumed: 2,
                event: None
            }
        );
        assert!(d.is_mid_frame());
        let f = d.feed(&[0, 1, 7, 8]).unwrap();
        assert_eq!((f.consumed, f.event), (3, Some(Event::Frame(&[7][..]))));
        assert!(!d.is_mid_frame());
    }

    #[test]
    fn read_max_frame_len() {
        let mut d = Decoder::<BigEndian<4>, _>::new(Config::new().with_max_frame_len(3), [0u8; 8]);
        assert_eq!(
            d.feed(&[0, 0, 0, 3, 1, 2, 3]).unwrap().event,
            Some(Event::Frame(&[1, 2, 3][..]))
        );
        assert_eq!(
            d.feed(&[0, 0, 0, 4]),
            Err(DecodeError::FrameTooLong { len: 4, max: 3 })
        );
        // Poisoned until reset.
        assert_eq!(
            d.feed(&[0, 0, 0, 0]),
            Err(DecodeError::FrameTooLong { len: 4, max: 3 })
        );
        d.reset();
        assert_eq!(
            d.feed(&[0, 0, 0, 0]).unwrap().event,
            Some(Event::Frame(&[][..]))
        );
    }

    #[test]
    fn max_capped_by_storage_and_header() {
        let d = Decoder::<BigEndian<1>, _>::new(Config::new(), [0u8; 4096]);
        assert_eq!(d.max_frame_len(), 255);
        let d = Decoder::<BigEndian<4>, _>::new(Config::new(), [0u8; 100]);
        assert_eq!(d.max_frame_len(), 100);
    }

    #[test]
    fn skip_oversize_keeps_sync() {
        let cfg = Config::new()
            .with_max_frame_len(2)
            .with_oversize(Oversize::Skip);
        let mut d = Decoder::<BigEndian<2>, _>::new(cfg, [0u8; 2]);
        let stream = [0, 5, 1, 2, 3, 4, 5, 0, 2, 9, 9];
        let f = d.feed(&stream).unwrap();
        assert_eq!((f.consumed, f.event), (7, Some(Event::Skipped(5))));
        let f = d.feed(&stream[7..]).unwrap();
        assert_eq!(f.event, Some(Event::Frame(&[9, 9][..])));
        // Split skip: nothing stored, exactly the payload is discarded.
        assert_eq!(
            d.feed(&[0, 5, 1]).unwrap(),
            Feed {
                consumed: 3,
                event: None
            }
        );
        assert_eq!(
            d.feed(&[2, 3, 4, 5, 0]).unwrap(),
            Feed {
                consumed: 4,
                event: Some(Event::Skipped(5))
            }
        );
    }

    #[test]
    fn length_includes_header() {
        let cfg = Config::new().with_length_includes_header(true);
        let mut d = Decoder::<BigEndian<2>, _>::new(cfg, [0u8; 8]);
        assert_eq!(
            d.feed(&[0, 4, 7, 8]).unwrap().event,
            Some(Event::Frame(&[7, 8][..]))
        );
        assert_eq!(d.feed(&[0, 1]), Err(DecodeError::LengthUnderflow));
    }

    #[test]
    fn split_varint_header() {
        let mut d = Decoder::<Varint32, _>::new(Config::new(), [0u8; 400]);
        let mut frame = [0u8; 302];
        frame[0] = 0xac;
        frame[1] = 0x02;
        assert_eq!(
            d.feed(&frame[..1]).unwrap(),
            Feed {
                consumed: 1,
                event: None
            }
        );
        let f = d.feed(&frame[1..]).unwrap();
        assert_eq!(f.consumed, 301);
        assert_eq!(f.event, Some(Event::Frame(&[0u8; 300][..])));
    }

    #[test]
    fn buffstreams_negative_length_is_error() {
        let mut d = Decoder::<BuffStreams<3>, _>::new(Config::new(), [0u8; 8]);
        assert_eq!(d.feed(&[0x03, 0, 0]), Err(DecodeError::NegativeLength));
    }

    #[test]
    fn huge_declared_length_on_any_width() {
        let mut d = Decoder::<BigEndian<8>, _>::new(Config::new(), [0u8; 8]);
        assert_eq!(
            d.feed(&[0xff; 8]),
            Err(DecodeError::FrameTooLong {
                len: u64::MAX,
                max: 8
            })
        );
        let cfg = Config::new().with_oversize(Oversize::Skip);
        let mut d = Decoder::<BigEndian<8>, _>::new(cfg, [0u8; 8]);
        assert_eq!(
            d.feed(&[0xff; 12]).unwrap(),
            Feed {
                consumed: 12,
                event: None
            }
        );
        assert!(d.is_mid_frame());
    }

    #[test]
    fn heapless_vec_storage() {
        let mut d = Decoder::<BigEndian<1>, _>::new(Config::new(), heapless::Vec::<u8, 4>::new());
        assert_eq!(d.max_frame_len(), 4);
        d.feed(&[3, 1]).unwrap();
        assert_eq!(
            d.feed(&[2, 3]).unwrap().event,
            Some(Event::Frame(&[1, 2, 3][..]))
        );
    }

    /// Fuzz finding (`decode`, input `0b 23 06 e5 29 e5`): LittleEndian<4> with no maximum
    /// declared 0xe529e506 bytes and `Vec` storage was resized to 3.8 GB before a payload
    /// byte arrived. Storage now grows only with the bytes received.
    #[cfg(feature = "std")]
    #[test]
    fn regression_declared_length_is_not_allocated() {
        use crate::header::LittleEndian;
        let cfg = Config::new()
            .with_max_frame_len(usize::MAX)
            .with_oversize(Oversize::Skip);
        let mut d = Decoder::<LittleEndian<4>, _>::new(cfg, alloc::vec::Vec::new());
        assert_eq!(
            d.feed(&[0x06, 0xe5, 0x29, 0xe5]).unwrap(),
            Feed {
                consumed: 4,
                event: None
            }
        );
        assert_eq!(
            d.feed(&[1, 2, 3]).unwrap(),
            Feed {
                consumed: 3,
                event: None
            }
        );
        let storage = d.into_storage();
        assert_eq!(storage.len(), 3);
        assert!(storage.capacity() < 1024);
    }
}

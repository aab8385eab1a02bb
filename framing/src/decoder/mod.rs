//! The push-style, sans-io frame decoder.
//!
//! ```text
//! +---- header ----+------------ payload ------------+
//! | len (H format) |  len bytes (max_frame_len max)  |  ... next frame
//! +----------------+---------------------------------+
//! ```
//!
//! The contract: [`Decoder::decode`] (and [`Decoder::feed`] over it) never panics, never
//! allocates, never reads or waits for anything, and checks the declared length against the
//! maximum before it stores a single payload byte. Any cut of a stream into calls yields the
//! same frames and errors as one call.
//!
//! Two ways in:
//! - [`Decoder::feed`]: consumed bytes plus the borrowed [`Event`]; the simplest.
//! - [`Decoder::decode`] then [`Decoder::event`]: consumed bytes plus a small `Copy`
//!   [`Found`] that borrows nothing, turned into the [`Event`] when (and where) the caller
//!   wants it. A driver that decodes inside a closure over a socket's receive ring (smoltcp's
//!   `recv(|ring| ..)`) and must call it again for the bytes after the ring's wrap uses this.

use core::marker::PhantomData;

use crate::config::{Config, Oversize};
use crate::error::DecodeError;
use crate::header::{LengthPrefix, MAX_HEADER_LEN, Parsed};
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

/// A complete frame or a decoder event. More events may come (a match needs a `_` arm).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Event<'a> {
    /// A complete payload: borrowed from the input when the frame lay wholly inside it,
    /// otherwise from the decoder's storage.
    Frame(&'a [u8]),
    /// An oversize frame was discarded under [`Oversize::Skip`]; its declared payload length.
    Skipped(u64),
}

/// What one [`Decoder::decode`] call produced: like [`Feed`], but borrowing nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Decoded {
    /// Bytes of the input that were consumed; decode the rest next.
    pub consumed: usize,
    /// Where a complete frame or event lies, if one ended within the consumed bytes; turn it
    /// into an [`Event`] with [`Decoder::event`].
    pub found: Option<Found>,
}

/// Where a complete item lies, without borrowing the input or the decoder.
///
/// Returned by [`Decoder::decode`]; [`Decoder::event`] turns it back into the borrowed
/// [`Event`]. Offsets are relative to the input of the `decode` call that returned it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Found {
    /// The whole frame lay inside the input: its payload is `input[start..start + len]`
    /// (zero copy).
    InInput {
        /// Offset of the payload's first byte in the input.
        start: usize,
        /// Payload length.
        len: usize,
    },
    /// The frame was split across calls and assembled in the decoder's storage: its payload
    /// is the storage's first `len` bytes, valid until the next `decode`, `feed` or `reset`.
    Stored {
        /// Payload length.
        len: usize,
    },
    /// An oversize frame was discarded under [`Oversize::Skip`].
    Skipped {
        /// The payload length its header declared.
        len: u64,
    },
}

impl Found {
    /// Moves an [`InInput`](Self::InInput) location by `by` bytes, for a caller that decoded
    /// a sub-slice `input[by..]` and resolves against `input`.
    #[inline]
    pub const fn offset(self, by: usize) -> Self {
        match self {
            Self::InInput { start, len } => Self::InInput {
                start: start.saturating_add(by),
                len,
            },
            other => other,
        }
    }
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

/// What a header's declared value means: a payload to read, or one to discard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// A payload of this many bytes, within the maximum.
    Frame(usize),
    /// An oversize payload of this many bytes, to discard under [`Oversize::Skip`].
    Skip(u64),
}

/// Judges a header that declared `value` in `header_len` bytes against `config` and the
/// effective maximum `max`: the one place every decoder of this crate checks a peer's length.
#[inline(always)]
pub(crate) fn judge(
    config: &Config,
    max: usize,
    value: u64,
    header_len: usize,
) -> Result<Verdict, DecodeError> {
    let declared = if config.length_includes_header() {
        value
            .checked_sub(header_len as u64)
            .ok_or(DecodeError::LengthUnderflow)?
    } else {
        value
    };
    match usize::try_from(declared) {
        Ok(len) if len <= max => Ok(Verdict::Frame(len)),
        _ => match config.oversize() {
            Oversize::Reject => Err(DecodeError::FrameTooLong { len: declared, max }),
            Oversize::Skip if declared > config.max_skip_len() => Err(DecodeError::TooLongToSkip {
                len: declared,
                limit: config.max_skip_len(),
            }),
            Oversize::Skip => Ok(Verdict::Skip(declared)),
        },
    }
}

/// Incremental frame decoder for header format `H`, assembling split frames in storage `S`.
///
/// [`new`](Self::new) is a `const fn`, so firmware can keep a decoder in a `static`:
///
/// ```
/// use buffstreams_framing::{BigEndian, Config, Decoder};
///
/// use std::sync::Mutex;
///
/// // On firmware: `critical_section::Mutex<RefCell<_>>` or a `static` owned by RTIC.
/// static DECODER: Mutex<Decoder<BigEndian<2>, [u8; 256]>> =
///     Mutex::new(Decoder::new(Config::new(), [0; 256]));
///
/// let mut dec = DECODER.lock().unwrap();
/// assert_eq!(dec.max_frame_len(), 256);
/// assert_eq!(dec.feed(&[0, 1, 7]).unwrap().consumed, 3);
/// ```
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
    /// The configured maximum capped by what `H` can express; the storage's capacity caps it
    /// further where it is used (reading it needs a trait call, which a `const fn` cannot make).
    max: usize,
    state: State,
    hdr: [u8; MAX_HEADER_LEN],
    hdr_len: usize,
    storage: S,
    _format: PhantomData<fn() -> H>,
}

impl<H: LengthPrefix, S> Decoder<H, S> {
    /// Creates a decoder. The effective maximum payload length is the smallest of
    /// `config.max_frame_len()`, what `H` can express and `storage.capacity()`.
    pub const fn new(config: Config, storage: S) -> Self {
        const { assert!(H::MAX_HEADER_LEN >= 1 && H::MAX_HEADER_LEN <= MAX_HEADER_LEN) };
        Self {
            max: config.effective_max_frame_len::<H>(),
            config,
            state: State::Header,
            hdr: [0; MAX_HEADER_LEN],
            hdr_len: 0,
            storage,
            _format: PhantomData,
        }
    }
}

impl<H: LengthPrefix, S: Storage> Decoder<H, S> {
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
        let Decoded { consumed, found } = self.decode(input)?;
        let event = match found {
            None => None,
            Some(found) => Some(self.event(input, found).ok_or(DecodeError::Storage)?),
        };
        Ok(Feed { consumed, event })
    }

    /// Turns what [`decode`](Self::decode) found in `input` into the borrowed [`Event`]: a
    /// frame borrowed from `input` (it lay wholly inside) or from the decoder's storage.
    ///
    /// Pass the same `input` that `decode` was given (or a slice that starts at the same byte
    /// and is at least as long; see [`Found::offset`] for sub-slices).
    ///
    /// Returns `None` only for a caller bug: `input` too short for the location, or a custom
    /// [`Storage`] that does not hold the bytes it was given. Never because of what a peer sent.
    ///
    /// # Examples
    /// Decoding inside a closure that lends the bytes, twice in a row (a ring that wraps):
    /// ```
    /// use buffstreams_framing::{BigEndian, Config, Decoder, Event};
    ///
    /// fn with_ring<R>(ring: &[u8], f: impl FnOnce(&[u8]) -> (usize, R)) -> R { f(ring).1 }
    ///
    /// let mut dec = Decoder::<BigEndian<2>, _>::new(Config::new(), [0u8; 64]);
    /// let mut frames = 0;
    /// for part in [&[0u8, 2, b'h', b'i', 0][..], &[1, b'!'][..]] {
    ///     with_ring(part, |ring| {
    ///         let mut pos = 0;
    ///         while pos < ring.len() {
    ///             let input = &ring[pos..];
    ///             let d = dec.decode(input).unwrap();
    ///             pos += d.consumed;
    ///             if let Some(found) = d.found {
    ///                 let Some(Event::Frame(f)) = dec.event(input, found) else { panic!() };
    ///                 assert_eq!(f, if frames == 0 { &b"hi"[..] } else { &b"!"[..] });
    ///                 frames += 1;
    ///             }
    ///         }
    ///         (pos, ())
    ///     });
    /// }
    /// assert_eq!(frames, 2);
    /// ```
    #[inline(always)]
    pub fn event<'a>(&'a self, input: &'a [u8], found: Found) -> Option<Event<'a>> {
        match found {
            Found::Skipped { len } => Some(Event::Skipped(len)),
            frame => self.payload(input, frame).map(Event::Frame),
        }
    }

    /// The payload of a frame [`decode`](Self::decode) found in `input`; `None` for
    /// [`Found::Skipped`] (it has none) and for the caller bugs [`event`](Self::event) names.
    #[inline(always)]
    pub(crate) fn payload<'a>(&'a self, input: &'a [u8], found: Found) -> Option<&'a [u8]> {
        match found {
            Found::InInput { start, len } => {
                start.checked_add(len).and_then(|end| input.get(start..end))
            }
            Found::Stored { len } => self.storage.filled(len),
            Found::Skipped { .. } => None,
        }
    }

    /// Consumes bytes from `input` and locates at most one frame or event, borrowing nothing:
    /// the borrow-free half of [`feed`](Self::feed).
    ///
    /// Returns with `found: None` once all of `input` is consumed and no frame is complete;
    /// incomplete input is not an error. Every call with non-empty input consumes at least
    /// one byte or finds an item, so a loop over it always ends.
    ///
    /// # Errors
    /// As [`feed`](Self::feed).
    #[inline(always)]
    pub fn decode(&mut self, input: &[u8]) -> Result<Decoded, DecodeError> {
        let (consumed, found) = self.step(input)?;
        Ok(Decoded { consumed, found })
    }

    /// The state machine: consumes input and locates at most one finished item.
    #[inline(always)]
    fn step(&mut self, input: &[u8]) -> Result<(usize, Option<Found>), DecodeError> {
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
    fn stash_header(&mut self, input: &[u8]) -> Result<(usize, Option<Found>), DecodeError> {
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
    fn continue_header(&mut self, input: &[u8]) -> Result<(usize, Option<Found>), DecodeError> {
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
    ) -> Result<(usize, Option<Found>), DecodeError> {
        let len = match judge(&self.config, self.max_frame_len(), value, header_len) {
            Ok(Verdict::Frame(len)) => len,
            Ok(Verdict::Skip(len)) => return Ok(self.skip(input, pos, len, len)),
            Err(e) => return Err(self.fail(e)),
        };
        let rest = input.get(pos..).unwrap_or_default();
        if len <= rest.len() {
            // Zero copy: the whole payload is in this input.
            self.state = State::Header;
            return Ok((pos + len, Some(Found::InInput { start: pos, len })));
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
    ) -> Result<(usize, Option<Found>), DecodeError> {
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
            Ok((n, Some(Found::Stored { len })))
        } else {
            self.state = State::Body { len, filled: upto };
            Ok((n, None))
        }
    }

    /// Discards oversize payload bytes from `input[pos..]`; never stores them.
    fn skip(
        &mut self,
        input: &[u8],
        pos: usize,
        len: u64,
        remaining: u64,
    ) -> (usize, Option<Found>) {
        let avail = input.len().saturating_sub(pos);
        let n = usize::try_from(remaining).map_or(avail, |r| r.min(avail));
        let remaining = remaining.saturating_sub(n as u64);
        let consumed = pos.saturating_add(n);
        if remaining == 0 {
            self.state = State::Header;
            (consumed, Some(Found::Skipped { len }))
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

    /// The effective maximum payload length: the configured one, capped by what the header
    /// format can express and by the storage's capacity.
    #[inline(always)]
    pub fn max_frame_len(&self) -> usize {
        self.max.min(self.storage.capacity())
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
            .field("buffered_header_bytes", &self.hdr_len)
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
mod tests;

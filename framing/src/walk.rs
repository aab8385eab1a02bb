//! Stateless views of complete frames in a byte slice, in the spirit of smoltcp's `wire`
//! module: check, then read. For bytes already in hand (a batch this side framed, a buffer
//! read whole); a stream that arrives in pieces goes through the [`Decoder`](crate::Decoder).
//!
//! The header is checked as the decoder checks it: the length adjustment
//! ([`Config::with_length_includes_header`]) and the maximum
//! ([`Config::with_max_frame_len`], capped by what the header can express) apply, so a
//! declared length is never trusted further than the decoder would trust it. Nothing here
//! allocates, stores or panics.

use core::marker::PhantomData;

use crate::config::{Config, Oversize};
use crate::decoder::{Verdict, judge};
use crate::error::DecodeError;
use crate::header::{LengthPrefix, Parsed};

/// Where the complete frame at the start of a slice lies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct FrameAt {
    /// Bytes of the header.
    pub header_len: usize,
    /// Bytes of the payload, right after the header.
    pub payload_len: usize,
}

impl FrameAt {
    /// The frame's length on the wire: header and payload.
    pub const fn len(&self) -> usize {
        self.header_len.saturating_add(self.payload_len)
    }

    /// Whether the frame takes no bytes at all (never: every header has at least one).
    pub const fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The payload, in the slice this frame was found at the start of.
    pub fn payload<'a>(&self, buf: &'a [u8]) -> Option<&'a [u8]> {
        buf.get(self.header_len..self.len())
    }
}

/// Checks for a complete frame of format `H` at the start of `buf`.
///
/// `Ok(Some(frame))` when header and payload are all in `buf`, `Ok(None)` when more bytes
/// are needed (a header or payload cut short).
///
/// # Errors
/// A [`DecodeError`] when the header is invalid or declares more than the maximum, exactly
/// as the [`Decoder`](crate::Decoder) would report it (with [`Oversize::Reject`](crate::Oversize)).
///
/// # Examples
/// ```
/// use buffstreams_framing::{BigEndian, Config, FrameAt, frame_at};
///
/// let buf = [0, 2, b'h', b'i', 0, 9];
/// let frame = frame_at::<BigEndian<2>>(&Config::new(), &buf)?.unwrap();
/// assert_eq!(frame, FrameAt { header_len: 2, payload_len: 2 });
/// assert_eq!(frame.payload(&buf), Some(&b"hi"[..]));
/// assert_eq!(frame_at::<BigEndian<2>>(&Config::new(), &buf[4..])?, None); // cut short
/// # Ok::<(), buffstreams_framing::DecodeError>(())
/// ```
pub fn frame_at<H: LengthPrefix>(
    config: &Config,
    buf: &[u8],
) -> Result<Option<FrameAt>, DecodeError> {
    let (value, header_len) = match H::parse(buf)? {
        Parsed::Complete { value, header_len } => (value, header_len),
        Parsed::Incomplete => return Ok(None),
    };
    // The encoder's maximum: the configured one, capped by what `H` can express. An oversize
    // frame is an error here whatever the policy (skipping is the decoder's business).
    let max = config.effective_max_frame_len::<H>();
    let reject = config.with_oversize(Oversize::Reject);
    let Verdict::Frame(payload_len) = judge(&reject, max, value, header_len)? else {
        return Err(DecodeError::FrameTooLong { len: value, max });
    };
    let too_long = DecodeError::FrameTooLong {
        len: payload_len as u64,
        max,
    };
    let total = header_len.checked_add(payload_len).ok_or(too_long)?;
    Ok((buf.len() >= total).then_some(FrameAt {
        header_len,
        payload_len,
    }))
}

/// The complete frames at the start of a slice, in order: yields each payload and stops at
/// the first frame cut short (its bytes are left, from [`offset`](Self::offset) on). After an
/// error it yields nothing more.
///
/// # Examples
/// ```
/// use buffstreams_framing::{Config, Frames, Varint32};
///
/// let batch = [2, b'h', b'i', 0, 3, b'y', b'o'];
/// let mut frames = Frames::<Varint32>::new(Config::new(), &batch);
/// assert_eq!(frames.next(), Some(Ok(&b"hi"[..])));
/// assert_eq!(frames.next(), Some(Ok(&b""[..])));
/// assert_eq!(frames.next(), None); // "3, y, o" is cut short
/// assert_eq!(frames.offset(), 4);
/// ```
#[derive(Clone, Debug)]
pub struct Frames<'a, H> {
    buf: &'a [u8],
    at: usize,
    config: Config,
    _format: PhantomData<fn() -> H>,
}

impl<'a, H: LengthPrefix> Frames<'a, H> {
    /// Walks the frames of format `H` at the start of `buf`.
    pub const fn new(config: Config, buf: &'a [u8]) -> Self {
        Self {
            buf,
            at: 0,
            config,
            _format: PhantomData,
        }
    }

    /// Bytes walked so far: the end of the last frame yielded.
    pub const fn offset(&self) -> usize {
        self.at
    }
}

impl<'a, H: LengthPrefix> Iterator for Frames<'a, H> {
    type Item = Result<&'a [u8], DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.buf.get(self.at..).filter(|r| !r.is_empty())?;
        match frame_at::<H>(&self.config, rest) {
            Ok(Some(frame)) => {
                let payload = frame.payload(rest)?;
                self.at = self.at.saturating_add(frame.len());
                Some(Ok(payload))
            }
            Ok(None) => None,
            Err(e) => {
                self.buf = &[];
                self.at = 0;
                Some(Err(e))
            }
        }
    }
}

impl<H: LengthPrefix> core::iter::FusedIterator for Frames<'_, H> {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::header::{BigEndian, BuffStreams, Varint64};
    use crate::{Decoder, Encoder, Event};

    #[test]
    fn walks_what_the_decoder_reads() {
        fn check<H: LengthPrefix>(config: Config) {
            let enc = Encoder::<H>::new(config.with_max_frame_len(300));
            let mut wire = [0u8; 4096];
            let mut n = 0;
            for len in [0usize, 1, 127, 128, 200, 255] {
                n += enc
                    .encode(&[len as u8; 255][..len], &mut wire[n..])
                    .unwrap();
            }
            let wire = &wire[..n];
            let mut dec = Decoder::<H, _>::new(config.with_max_frame_len(300), [0u8; 300]);
            let mut walk = Frames::<H>::new(config.with_max_frame_len(300), wire);
            let mut rest = wire;
            let mut ends = [0usize; 6];
            let mut k = 0;
            while !rest.is_empty() {
                let f = dec.feed(rest).unwrap();
                rest = &rest[f.consumed..];
                if let Some(Event::Frame(p)) = f.event {
                    assert_eq!(walk.next(), Some(Ok(p)));
                    assert_eq!(walk.offset(), wire.len() - rest.len());
                    ends[k] = walk.offset();
                    k += 1;
                }
            }
            assert_eq!((k, walk.next()), (6, None));
            // Every cut: exactly the frames that end at or before it, then a stop there.
            for cut in 0..=wire.len() {
                let mut walk = Frames::<H>::new(config.with_max_frame_len(300), &wire[..cut]);
                let whole = walk.by_ref().map(Result::unwrap).count();
                let expect = ends.iter().filter(|&&e| e <= cut).count();
                assert_eq!(whole, expect, "cut {cut}");
                assert_eq!(
                    walk.offset(),
                    if expect == 0 { 0 } else { ends[expect - 1] }
                );
            }
        }
        check::<BigEndian<2>>(Config::new());
        check::<BigEndian<2>>(Config::new().with_length_includes_header(true));
        check::<Varint64>(Config::new());
        check::<BuffStreams<3>>(Config::new());
    }

    #[test]
    fn checks_the_header_as_the_decoder_does() {
        let cfg = Config::new().with_max_frame_len(3);
        assert_eq!(
            frame_at::<BigEndian<2>>(&cfg, &[0, 4, 1, 2, 3, 4]),
            Err(DecodeError::FrameTooLong { len: 4, max: 3 })
        );
        let counting = Config::new().with_length_includes_header(true);
        assert_eq!(
            frame_at::<BigEndian<2>>(&counting, &[0, 1]),
            Err(DecodeError::LengthUnderflow)
        );
        assert_eq!(frame_at::<BigEndian<2>>(&cfg, &[0]), Ok(None));
        let huge = Config::new().with_max_frame_len(usize::MAX);
        // u64::MAX bytes: over what a usize frame can hold on any target, never wrapped.
        let err = DecodeError::FrameTooLong {
            len: u64::MAX,
            max: usize::MAX,
        };
        assert_eq!(frame_at::<BigEndian<8>>(&huge, &[0xff; 12]), Err(err));
        let mut walk = Frames::<BigEndian<8>>::new(huge, &[0xff; 12]);
        assert_eq!(walk.next(), Some(Err(err)));
        assert_eq!(walk.next(), None, "fused after an error");
    }
}

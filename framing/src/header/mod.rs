//! Length header formats.
//!
//! Each format is a zero-sized type implementing [`LengthPrefix`]. The decoder and encoder are
//! generic over it, so the header is parsed by straight-line code with the width known at compile
//! time.
//!
//! | type | wire | peers |
//! |---|---|---|
//! | [`BigEndian<N>`] | N-byte unsigned, most significant byte first | tokio-util `LengthDelimitedCodec`, Netty `LengthFieldPrepender` |
//! | [`LittleEndian<N>`] | N-byte unsigned, least significant byte first | tokio-util `little_endian()` |
//! | [`Varint32`] | LEB128, at most 5 bytes | protobuf `writeDelimitedTo` / `parseDelimitedFrom` |
//! | [`Varint64`] | LEB128, at most 10 bytes | Go `protodelim` |
//! | [`BuffStreams<N>`] | zigzag varint zero-padded to N bytes | Go BuffStreams v2 |

use core::fmt;
use core::ops::Deref;

use crate::error::DecodeError;

/// The widest header any format in this crate uses (a 10-byte varint).
pub const MAX_HEADER_LEN: usize = 10;

/// Outcome of parsing a header from the start of a buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Parsed {
    /// A whole header was found.
    Complete {
        /// The length value the header carries.
        value: u64,
        /// How many bytes the header occupies.
        header_len: usize,
    },
    /// More bytes are needed; none of the bytes seen so far is invalid.
    Incomplete,
}

/// A length header format: one of this crate's ([`BigEndian`], [`LittleEndian`], [`Varint32`],
/// [`Varint64`], [`BuffStreams`]).
///
/// The trait is **sealed**: it can be named (to be generic over formats) but not implemented
/// outside this crate. Every format is one we test byte for byte against a real peer, and the
/// decoder's guarantees (progress on every call, nothing consumed past the input) rest on each
/// format's `parse` reporting a header length within what it was given. A new wire format is
/// a change to this crate, with its peer and tests.
///
/// Implementations are pure functions of their input: [`parse`](Self::parse) is called again
/// with a longer buffer after `Incomplete`, and returns `Incomplete` only for buffers shorter
/// than [`MAX_HEADER_LEN`](Self::MAX_HEADER_LEN).
///
/// ```compile_fail,E0277
/// use buffstreams_framing::{DecodeError, Header, LengthPrefix, Parsed};
/// struct Mine;
/// impl LengthPrefix for Mine { // error: the trait is sealed
///     const MAX_HEADER_LEN: usize = 1;
///     const MAX_VALUE: u64 = 255;
///     fn parse(_: &[u8]) -> Result<Parsed, DecodeError> { Ok(Parsed::Incomplete) }
///     fn emit(_: u64) -> Option<Header> { None }
///     fn header_len(_: u64) -> usize { 1 }
/// }
/// ```
pub trait LengthPrefix: sealed::Sealed {
    /// The widest header of this format, in bytes (at most [`MAX_HEADER_LEN`]).
    const MAX_HEADER_LEN: usize;
    /// The largest length value the format can express.
    const MAX_VALUE: u64;

    /// Parses a header from the start of `buf`.
    ///
    /// # Errors
    /// A [`DecodeError`] when the bytes can never start a valid header.
    fn parse(buf: &[u8]) -> Result<Parsed, DecodeError>;

    /// Encodes `value`, or `None` when it exceeds [`MAX_VALUE`](Self::MAX_VALUE).
    fn emit(value: u64) -> Option<Header>;

    /// The number of bytes [`emit`](Self::emit) writes for `value`.
    fn header_len(value: u64) -> usize;
}

mod sealed {
    /// Keeps [`LengthPrefix`](super::LengthPrefix) implementable here only.
    pub trait Sealed {}
    impl<const N: usize> Sealed for super::BigEndian<N> {}
    impl<const N: usize> Sealed for super::LittleEndian<N> {}
    impl Sealed for super::Varint32 {}
    impl Sealed for super::Varint64 {}
    impl<const N: usize> Sealed for super::BuffStreams<N> {}
}

/// Encoded header bytes, returned by value (no buffer needed).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Header {
    bytes: [u8; MAX_HEADER_LEN],
    len: u8,
}

impl Header {
    /// The header bytes, ready to be written before the payload.
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..usize::from(self.len)).unwrap_or_default()
    }

    /// The header at the start of a fixed-size array; bytes past its length (`len()`) are
    /// zero. Copying the whole array is one fixed-size move where copying
    /// [`as_bytes`](Self::as_bytes) is a variable-length `memcpy`: hot loops with room to
    /// spare write this, then the payload right after the real header.
    ///
    /// ```
    /// use buffstreams_framing::{BigEndian, Config, Encoder, MAX_HEADER_LEN};
    ///
    /// let header = Encoder::<BigEndian<4>>::new(Config::new()).header(300)?;
    /// let padded: &[u8; MAX_HEADER_LEN] = header.padded();
    /// assert_eq!(&padded[..header.len()], &[0, 0, 1, 44]);
    /// assert!(padded[header.len()..].iter().all(|&b| b == 0));
    /// # Ok::<(), buffstreams_framing::EncodeError>(())
    /// ```
    #[inline]
    pub fn padded(&self) -> &[u8; MAX_HEADER_LEN] {
        &self.bytes
    }
}

impl Deref for Header {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl AsRef<[u8]> for Header {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl fmt::Debug for Header {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Header").field(&self.as_bytes()).finish()
    }
}

#[cfg(feature = "defmt")]
impl defmt::Format for Header {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(f, "Header({=[u8]:x})", self.as_bytes())
    }
}

/// The longest payload `H` can frame: its largest value, less the header's own bytes when the
/// length counts the header too (so every payload up to it can be encoded), capped to `usize`.
pub(crate) const fn max_payload<H: LengthPrefix>(includes_header: bool) -> usize {
    let value = if includes_header {
        H::MAX_VALUE.saturating_sub(H::MAX_HEADER_LEN as u64)
    } else {
        H::MAX_VALUE
    };
    if value > usize::MAX as u64 {
        usize::MAX
    } else {
        value as usize
    }
}

/// `N`-byte unsigned big-endian length, N in 1..=8. `BigEndian<4>` is tokio-util's
/// `LengthDelimitedCodec` default.
///
/// Any other width fails to compile as soon as it is used:
///
/// ```compile_fail
/// use buffstreams_framing::{BigEndian, Encoder};
/// let _ = Encoder::<BigEndian<9>>::default();
/// ```
///
/// ```compile_fail
/// use buffstreams_framing::{LittleEndian, Encoder};
/// let _ = Encoder::<LittleEndian<0>>::default();
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct BigEndian<const N: usize>;

/// `N`-byte unsigned little-endian length, N in 1..=8.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct LittleEndian<const N: usize>;

const fn fixed_width(n: usize) -> usize {
    assert!(
        n >= 1 && n <= 8,
        "fixed-width length headers are 1 to 8 bytes wide"
    );
    n
}

const fn fixed_max(n: usize) -> u64 {
    let n = fixed_width(n);
    if n == 8 {
        u64::MAX
    } else {
        (1u64 << (8 * n)) - 1
    }
}

impl<const N: usize> LengthPrefix for BigEndian<N> {
    const MAX_HEADER_LEN: usize = fixed_width(N);
    const MAX_VALUE: u64 = fixed_max(N);

    #[inline(always)]
    fn parse(buf: &[u8]) -> Result<Parsed, DecodeError> {
        let Some(bytes) = buf.get(..N) else {
            return Ok(Parsed::Incomplete);
        };
        let value = bytes.iter().fold(0u64, |v, &b| (v << 8) | u64::from(b));
        Ok(Parsed::Complete {
            value,
            header_len: N,
        })
    }

    #[inline]
    fn emit(value: u64) -> Option<Header> {
        if value > Self::MAX_VALUE {
            return None;
        }
        let mut bytes = [0u8; MAX_HEADER_LEN];
        let be = value.to_be_bytes();
        let src = be.get(8usize.saturating_sub(N)..).unwrap_or_default();
        for (d, s) in bytes.iter_mut().zip(src) {
            *d = *s;
        }
        Some(Header {
            bytes,
            len: N as u8,
        })
    }

    #[inline]
    fn header_len(_: u64) -> usize {
        N
    }
}

impl<const N: usize> LengthPrefix for LittleEndian<N> {
    const MAX_HEADER_LEN: usize = fixed_width(N);
    const MAX_VALUE: u64 = fixed_max(N);

    #[inline(always)]
    fn parse(buf: &[u8]) -> Result<Parsed, DecodeError> {
        let Some(bytes) = buf.get(..N) else {
            return Ok(Parsed::Incomplete);
        };
        let value = bytes
            .iter()
            .rev()
            .fold(0u64, |v, &b| (v << 8) | u64::from(b));
        Ok(Parsed::Complete {
            value,
            header_len: N,
        })
    }

    #[inline]
    fn emit(value: u64) -> Option<Header> {
        if value > Self::MAX_VALUE {
            return None;
        }
        let mut bytes = [0u8; MAX_HEADER_LEN];
        for (d, s) in bytes.iter_mut().zip(value.to_le_bytes().iter().take(N)) {
            *d = *s;
        }
        Some(Header {
            bytes,
            len: N as u8,
        })
    }

    #[inline]
    fn header_len(_: u64) -> usize {
        N
    }
}

/// Unsigned LEB128 varint of at most `max_bytes`; `last_max` bounds the final byte so the
/// value cannot overflow its range.
#[inline(always)]
fn parse_uvarint(buf: &[u8], max_bytes: usize, last_max: u8) -> Result<Parsed, DecodeError> {
    let mut value = 0u64;
    let mut shift = 0u32;
    for (i, &b) in buf.iter().take(max_bytes).enumerate() {
        let last = i + 1 == max_bytes;
        if last && b > last_max {
            return Err(DecodeError::VarintOverflow);
        }
        value |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(Parsed::Complete {
                value,
                header_len: i + 1,
            });
        }
        shift += 7;
    }
    Ok(Parsed::Incomplete)
}

fn emit_uvarint(mut value: u64, pad_to: usize) -> Header {
    let mut bytes = [0u8; MAX_HEADER_LEN];
    let mut len = 0usize;
    for slot in bytes.iter_mut() {
        len += 1;
        if value < 0x80 {
            *slot = value as u8;
            break;
        }
        *slot = (value as u8 & 0x7f) | 0x80;
        value >>= 7;
    }
    Header {
        bytes,
        len: len.max(pad_to) as u8,
    }
}

const fn uvarint_len(value: u64) -> usize {
    let bits = 64 - (value | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Protobuf delimited-stream length (`writeDelimitedTo` / `parseDelimitedFrom`): an unsigned
/// LEB128 varint of at most 5 bytes whose value fits in 32 bits. Non-minimal encodings
/// (`85 00` = 5) are accepted, as the protobuf libraries do.
///
/// # Stricter than the C++ reader
/// Rejected with [`DecodeError::VarintOverflow`]: a varint longer than 5 bytes, and a 5-byte
/// one whose last byte is above `0x0F` (a value over `u32::MAX`). C++ protobuf's
/// `CodedInputStream::ReadVarint32` accepts both, reading up to 10 bytes and keeping the low
/// 32 bits, so a length it would take modulo 2^32 is an error here, never a wrapped length.
/// No protobuf writer produces such a varint for a 32-bit length.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Varint32;

impl LengthPrefix for Varint32 {
    const MAX_HEADER_LEN: usize = 5;
    const MAX_VALUE: u64 = u32::MAX as u64;

    #[inline(always)]
    fn parse(buf: &[u8]) -> Result<Parsed, DecodeError> {
        parse_uvarint(buf, 5, 0x0f)
    }

    fn emit(value: u64) -> Option<Header> {
        (value <= Self::MAX_VALUE).then(|| emit_uvarint(value, 0))
    }

    fn header_len(value: u64) -> usize {
        uvarint_len(value)
    }
}

/// Go `protodelim` length: an unsigned LEB128 varint of at most 10 bytes (a 10th byte above
/// `0x01` overflows 64 bits and is an error, as in Go's `binary.Uvarint`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Varint64;

impl LengthPrefix for Varint64 {
    const MAX_HEADER_LEN: usize = 10;
    const MAX_VALUE: u64 = u64::MAX;

    #[inline(always)]
    fn parse(buf: &[u8]) -> Result<Parsed, DecodeError> {
        parse_uvarint(buf, 10, 0x01)
    }

    fn emit(value: u64) -> Option<Header> {
        Some(emit_uvarint(value, 0))
    }

    fn header_len(value: u64) -> usize {
        uvarint_len(value)
    }
}

/// Go BuffStreams v2 header: the length as a zigzag signed varint (Go `binary.PutVarint`),
/// zero-padded to exactly `N` bytes, N in 1..=10. Negative lengths are errors; bytes after the
/// varint's last byte are padding and ignored, as Go's `binary.Varint` does.
///
/// Go derives `N` from its `MaxMessageSize`; [`buffstreams_header_len`] computes it the same way.
///
/// ```
/// use buffstreams_framing::{buffstreams_header_len, BuffStreams, LengthPrefix};
/// type Go = BuffStreams<{ buffstreams_header_len(4096) }>; // 3 bytes
/// assert_eq!(&*Go::emit(300).unwrap(), &[0xd8, 0x04, 0x00]);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct BuffStreams<const N: usize>;

impl<const N: usize> LengthPrefix for BuffStreams<N> {
    const MAX_HEADER_LEN: usize = {
        assert!(
            N >= 1 && N <= 10,
            "BuffStreams headers are 1 to 10 bytes wide"
        );
        N
    };
    // Zigzag doubles the value, and N bytes carry 7 * N varint bits.
    const MAX_VALUE: u64 = if 7 * N > 63 {
        i64::MAX as u64
    } else {
        (1u64 << (7 * N - 1)) - 1
    };

    #[inline(always)]
    fn parse(buf: &[u8]) -> Result<Parsed, DecodeError> {
        let Some(bytes) = buf.get(..N) else {
            return Ok(Parsed::Incomplete);
        };
        match parse_uvarint(bytes, N, if N == 10 { 0x01 } else { 0xff })? {
            // The varint did not end inside the N header bytes.
            Parsed::Incomplete => Err(DecodeError::VarintOverflow),
            Parsed::Complete { value, .. } if value & 1 == 1 => Err(DecodeError::NegativeLength),
            Parsed::Complete { value, .. } => Ok(Parsed::Complete {
                value: value >> 1,
                header_len: N,
            }),
        }
    }

    fn emit(value: u64) -> Option<Header> {
        (value <= Self::MAX_VALUE).then(|| emit_uvarint(value << 1, N))
    }

    fn header_len(_: u64) -> usize {
        N
    }
}

/// The BuffStreams header width Go derives from a maximum message size:
/// `ceil((floor(log2(max)) + 1) / 8) + 1` — 2 below 256, 3 for 256..=65535, 4 from 65536.
///
/// ```
/// use buffstreams_framing::buffstreams_header_len;
/// assert_eq!(buffstreams_header_len(255), 2);
/// assert_eq!(buffstreams_header_len(4096), 3);
/// assert_eq!(buffstreams_header_len(65535), 3);
/// assert_eq!(buffstreams_header_len(65536), 4);
/// ```
pub const fn buffstreams_header_len(max_message_size: usize) -> usize {
    let bits = (usize::BITS - (max_message_size | 1).leading_zeros()) as usize;
    bits.div_ceil(8) + 1
}

#[cfg(test)]
mod tests;

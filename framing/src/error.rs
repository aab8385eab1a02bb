//! Error types, one small `Copy` enum per operation.
//!
//! "The peer broke the protocol" ([`DecodeError`]) is kept apart from "the caller asked for
//! something the wire format cannot carry" ([`EncodeError`]); the I/O helpers wrap both together
//! with the transport's own error, generically, like `embedded_io::ReadExactError<E>`.

use core::fmt;

/// Why the decoder refused a stream. Every variant is caused by the bytes the peer sent,
/// except [`DecodeError::Storage`], which means a custom [`Storage`](crate::Storage) broke its
/// contract.
///
/// After an error the decoder is poisoned: it returns the same error until
/// [`Decoder::reset`](crate::Decoder::reset). The stream position is lost, so the connection
/// should be closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum DecodeError {
    /// The header declared a payload longer than the configured maximum
    /// (only with [`Oversize::Reject`](crate::Oversize::Reject)).
    FrameTooLong {
        /// Payload length the header declared (after length adjustment).
        len: u64,
        /// The effective maximum payload length.
        max: usize,
    },
    /// Under [`Oversize::Skip`](crate::Oversize::Skip), the header declared more than
    /// [`Config::max_skip_len`](crate::Config::max_skip_len): too long to discard.
    TooLongToSkip {
        /// Payload length the header declared (after length adjustment).
        len: u64,
        /// The skip limit.
        limit: u64,
    },
    /// A varint header ran past its maximum width or overflowed its value range.
    VarintOverflow,
    /// A BuffStreams header declared a negative length.
    NegativeLength,
    /// The header counts itself in the length, but declared fewer bytes than the header has.
    LengthUnderflow,
    /// A custom `Storage` broke its contract: it gave less room than its `capacity` promised,
    /// or not the bytes written to it. Never caused by the peer; the crate's own storages
    /// (arrays, slices, `heapless::Vec`, `Vec`, `Box<[u8]>`) never raise it.
    Storage,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::FrameTooLong { len, max } => {
                write!(f, "frame of {len} bytes exceeds the maximum of {max} bytes")
            }
            Self::VarintOverflow => f.write_str("varint length header is too long or overflows"),
            Self::TooLongToSkip { len, limit } => write!(
                f,
                "frame of {len} bytes is beyond the {limit}-byte limit for skipping oversize frames"
            ),
            Self::NegativeLength => f.write_str("length header declares a negative length"),
            Self::LengthUnderflow => {
                f.write_str("length header is shorter than the header it must include")
            }
            Self::Storage => f.write_str("frame storage is smaller than its declared capacity"),
        }
    }
}

impl core::error::Error for DecodeError {}

/// Why a payload could not be framed. These are caller errors: nothing went on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum EncodeError {
    /// The payload is longer than the configured maximum or than the header can express.
    /// (Go BuffStreams writes such a frame and its own reader then crashes on it.)
    FrameTooLong {
        /// Payload length that was asked for.
        len: usize,
        /// The effective maximum payload length.
        max: usize,
    },
    /// The output buffer cannot hold header and payload.
    BufferTooSmall {
        /// Bytes the frame needs.
        needed: usize,
        /// Bytes the buffer has.
        available: usize,
    },
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::FrameTooLong { len, max } => {
                write!(
                    f,
                    "payload of {len} bytes exceeds the maximum of {max} bytes"
                )
            }
            Self::BufferTooSmall { needed, available } => {
                write!(
                    f,
                    "frame needs {needed} bytes but the buffer has {available}"
                )
            }
        }
    }
}

impl core::error::Error for EncodeError {}

/// Error of the frame readers ([`FrameReader`](crate::FrameReader) and its async twin).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ReadError<E> {
    /// The underlying reader failed.
    Io(E),
    /// The peer sent bytes that are not a valid frame stream.
    Decode(DecodeError),
    /// The stream ended inside a frame; the partial frame was dropped.
    UnexpectedEof,
}

impl<E> From<DecodeError> for ReadError<E> {
    fn from(e: DecodeError) -> Self {
        Self::Decode(e)
    }
}

impl<E: fmt::Debug> fmt::Display for ReadError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(e) => write!(f, "read failed: {e:?}"),
            Self::Decode(e) => write!(f, "invalid frame: {e}"),
            Self::UnexpectedEof => f.write_str("stream ended inside a frame"),
        }
    }
}

impl<E: core::error::Error + 'static> core::error::Error for ReadError<E> {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Self::Io(e) => Some(e),
            Self::Decode(e) => Some(e),
            Self::UnexpectedEof => None,
        }
    }
}

/// Error of the frame writers ([`FrameWriter`](crate::FrameWriter) and its async twin).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum WriteError<E> {
    /// The underlying writer failed. Bytes of the frame may have been written.
    Io(E),
    /// The payload cannot be framed; nothing of it was written.
    Encode(EncodeError),
    /// The underlying writer accepted zero bytes (connection closed).
    WriteZero,
}

impl<E> From<EncodeError> for WriteError<E> {
    fn from(e: EncodeError) -> Self {
        Self::Encode(e)
    }
}

impl<E: fmt::Debug> fmt::Display for WriteError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(e) => write!(f, "write failed: {e:?}"),
            Self::Encode(e) => write!(f, "cannot frame payload: {e}"),
            Self::WriteZero => f.write_str("writer accepted zero bytes"),
        }
    }
}

impl<E: core::error::Error + 'static> core::error::Error for WriteError<E> {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Self::Io(e) => Some(e),
            Self::Encode(e) => Some(e),
            Self::WriteZero => None,
        }
    }
}

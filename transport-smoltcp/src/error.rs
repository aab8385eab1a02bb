//! Error types, one small `Copy` enum per operation.
//!
//! "The peer broke the protocol" ([`RecvError::Decode`]) is kept apart from "the caller asked
//! for something that cannot go out" ([`SendError`]) and from "the socket is not in a state to
//! do it" (`NotConnected`).

use core::fmt;

use buffstreams_framing::acked::SenderError;
use buffstreams_framing::{DecodeError, EncodeError};

/// Why a frame was not sent. Whatever the variant, no byte of the frame is in the send ring:
/// a frame goes out whole or not at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum SendError {
    /// The send ring has no room for the whole frame right now. Try again after the next
    /// `Interface::poll` has sent (and the peer acknowledged) queued bytes.
    Full {
        /// Bytes the frame takes, header included.
        needed: usize,
        /// Bytes free in the send ring.
        free: usize,
    },
    /// The frame is larger than the whole send ring, so it can never be queued at once: give
    /// the socket a larger transmit buffer or send smaller messages.
    ExceedsBuffer {
        /// Bytes the frame takes, header included.
        needed: usize,
        /// The send ring's capacity.
        capacity: usize,
    },
    /// The socket cannot send: not connected yet, or the connection is closing or closed.
    NotConnected,
    /// The payload cannot be framed (longer than the maximum or than the header can express).
    Encode(EncodeError),
    /// Acknowledged mode: the window of unacknowledged messages is full. Try again once
    /// acknowledgements have come (after the next polls).
    WindowFull,
}

impl From<EncodeError> for SendError {
    fn from(e: EncodeError) -> Self {
        Self::Encode(e)
    }
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Full { needed, free } => write!(
                f,
                "send ring full: frame needs {needed} bytes, {free} free (try after the next poll)"
            ),
            Self::ExceedsBuffer { needed, capacity } => write!(
                f,
                "frame of {needed} bytes can never fit a send ring of {capacity} bytes"
            ),
            Self::NotConnected => f.write_str("socket is not connected"),
            Self::WindowFull => f.write_str("the acknowledgement window is full"),
            Self::Encode(e) => write!(f, "cannot frame payload: {e}"),
        }
    }
}

impl core::error::Error for SendError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Self::Encode(e) => Some(e),
            _ => None,
        }
    }
}

/// Why receiving stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum RecvError {
    /// The peer sent bytes that are not a valid frame stream (oversize under `Reject`, a bad
    /// header). The stream position is lost: the connection should be aborted, and the
    /// listener and writer do so.
    Decode(DecodeError),
    /// The socket cannot receive: not connected, or the peer closed and everything it sent
    /// has been read.
    NotConnected,
    /// Acknowledged mode: the peer broke the acknowledged protocol (the connection is aborted).
    Acked(SenderError),
}

impl From<DecodeError> for RecvError {
    fn from(e: DecodeError) -> Self {
        Self::Decode(e)
    }
}

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Decode(e) => write!(f, "invalid frame: {e}"),
            Self::NotConnected => f.write_str("socket is not connected"),
            Self::Acked(e) => write!(f, "acknowledged mode: {e}"),
        }
    }
}

impl core::error::Error for RecvError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Self::Decode(e) => Some(e),
            Self::Acked(e) => Some(e),
            Self::NotConnected => None,
        }
    }
}

/// Why a reply could not be staged (see [`Connection::reply`](crate::Connection::reply)).
/// Nothing of the reply was staged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ReplyError {
    /// The connection's reply buffer cannot take the whole frame. Every message handler call
    /// starts with an empty reply buffer, so a reply up to its size always fits when it is the
    /// handler's first.
    Full {
        /// Bytes the frame takes, header included.
        needed: usize,
        /// Bytes free in the reply buffer.
        free: usize,
    },
    /// The payload cannot be framed.
    Encode(EncodeError),
    /// The connection is closing (the handler called [`close`](crate::Connection::close)).
    Closing,
}

impl From<EncodeError> for ReplyError {
    fn from(e: EncodeError) -> Self {
        Self::Encode(e)
    }
}

impl fmt::Display for ReplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Full { needed, free } => write!(
                f,
                "reply buffer full: frame needs {needed} bytes, {free} free"
            ),
            Self::Encode(e) => write!(f, "cannot frame reply: {e}"),
            Self::Closing => f.write_str("connection is closing"),
        }
    }
}

impl core::error::Error for ReplyError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Self::Encode(e) => Some(e),
            _ => None,
        }
    }
}

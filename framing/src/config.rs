//! Framing configuration shared by [`Decoder`](crate::Decoder) and [`Encoder`](crate::Encoder).

use crate::header::{LengthPrefix, max_payload};

/// The default maximum payload length, 4096 bytes, as Go BuffStreams.
pub const DEFAULT_MAX_FRAME_LEN: usize = 4096;

/// The default longest frame [`Oversize::Skip`] discards, 4 GiB − 1: every length a 1- to
/// 4-byte header or a `Varint32` can declare. Longer ones (an 8-byte header with its top bit
/// set, a `Varint64` in the exabytes) are not a message anyone sends: they are an error.
pub const DEFAULT_MAX_SKIP_LEN: u64 = u32::MAX as u64;

/// What the decoder does with a frame whose declared length exceeds the maximum.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Oversize {
    /// Fail with [`DecodeError::FrameTooLong`](crate::DecodeError::FrameTooLong); the stream is dead.
    #[default]
    Reject,
    /// Discard exactly that frame's payload bytes without buffering them, report
    /// [`Event::Skipped`](crate::Event::Skipped), and carry on with the next frame
    /// (Netty's discard mode). A declared length beyond
    /// [`Config::with_max_skip_len`] is still an error
    /// ([`DecodeError::TooLongToSkip`](crate::DecodeError::TooLongToSkip)): discarding it
    /// would swallow the rest of the stream.
    Skip,
}

/// Framing options. Build with the `with_*` methods; every method is `const`.
///
/// ```
/// use buffstreams_framing::{Config, Oversize};
/// const CONFIG: Config = Config::new().with_max_frame_len(64 * 1024).with_oversize(Oversize::Skip);
/// assert_eq!(CONFIG.max_frame_len(), 65536);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Config {
    max_frame_len: usize,
    max_skip_len: u64,
    includes_header: bool,
    oversize: Oversize,
}

impl Config {
    /// Max payload 4096 bytes, length counts the payload only, oversize frames rejected.
    pub const fn new() -> Self {
        Self {
            max_frame_len: DEFAULT_MAX_FRAME_LEN,
            max_skip_len: DEFAULT_MAX_SKIP_LEN,
            includes_header: false,
            oversize: Oversize::Reject,
        }
    }

    /// Sets the maximum payload length. The decoder checks every declared length against it
    /// before it buffers a single payload byte.
    ///
    /// # Warning
    /// The effective maximum is also capped by what the header format can express and, for the
    /// decoder, by the capacity of its storage; [`Decoder::max_frame_len`](crate::Decoder::max_frame_len)
    /// reports the value in force.
    pub const fn with_max_frame_len(mut self, max: usize) -> Self {
        self.max_frame_len = max;
        self
    }

    /// The longest frame [`Oversize::Skip`] discards (default [`DEFAULT_MAX_SKIP_LEN`],
    /// 4 GiB − 1); a header declaring more is
    /// [`DecodeError::TooLongToSkip`](crate::DecodeError::TooLongToSkip), as Netty reports a
    /// negative length. No effect under [`Oversize::Reject`].
    pub const fn with_max_skip_len(mut self, max: u64) -> Self {
        self.max_skip_len = max;
        self
    }

    /// Whether the length field counts the header's own bytes too (Netty
    /// `lengthIncludesLengthFieldLength`, tokio-util `length_adjustment(-N)`).
    pub const fn with_length_includes_header(mut self, yes: bool) -> Self {
        self.includes_header = yes;
        self
    }

    /// Sets the oversize policy.
    pub const fn with_oversize(mut self, policy: Oversize) -> Self {
        self.oversize = policy;
        self
    }

    /// The configured maximum payload length.
    pub const fn max_frame_len(&self) -> usize {
        self.max_frame_len
    }

    /// The maximum in force for header format `H`: the configured one, capped by what `H`
    /// can express (with [`length_includes_header`](Self::length_includes_header), less the
    /// header). [`Encoder::max_frame_len`](crate::Encoder::max_frame_len) is this;
    /// [`Decoder::max_frame_len`](crate::Decoder::max_frame_len) is this capped by its
    /// storage.
    ///
    /// ```
    /// use buffstreams_framing::{BigEndian, Config};
    ///
    /// let config = Config::new().with_max_frame_len(1 << 20);
    /// assert_eq!(config.effective_max_frame_len::<BigEndian<4>>(), 1 << 20);
    /// assert_eq!(config.effective_max_frame_len::<BigEndian<2>>(), 65_535);
    /// ```
    pub const fn effective_max_frame_len<H: LengthPrefix>(&self) -> usize {
        let expressible = max_payload::<H>(self.includes_header);
        if self.max_frame_len < expressible {
            self.max_frame_len
        } else {
            expressible
        }
    }

    /// The longest frame `Oversize::Skip` discards.
    pub const fn max_skip_len(&self) -> u64 {
        self.max_skip_len
    }

    /// Whether the length field counts the header too.
    pub const fn length_includes_header(&self) -> bool {
        self.includes_header
    }

    /// The oversize policy.
    pub const fn oversize(&self) -> Oversize {
        self.oversize
    }
}

impl Default for Config {
    fn default() -> Self {
        Self::new()
    }
}

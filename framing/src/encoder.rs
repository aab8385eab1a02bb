//! Frame encoding: header bytes by value, or a whole frame into a caller buffer.

use core::marker::PhantomData;

use crate::config::Config;
use crate::error::EncodeError;
use crate::header::{Header, LengthPrefix, MAX_HEADER_LEN};

/// Frames payloads in header format `H`.
///
/// # Examples
/// ```
/// use buffstreams_framing::{BigEndian, Encoder};
///
/// let enc = Encoder::<BigEndian<4>>::default();
/// assert_eq!(&*enc.header(5).unwrap(), &[0, 0, 0, 5]);
/// let mut out = [0u8; 16];
/// let n = enc.encode(b"hello", &mut out).unwrap();
/// assert_eq!(&out[..n], b"\0\0\0\x05hello");
/// assert_eq!(enc.encoded_len(5), Ok(9));
/// ```
pub struct Encoder<H> {
    config: Config,
    max: usize,
    _format: PhantomData<fn() -> H>,
}

impl<H: LengthPrefix> Encoder<H> {
    /// Creates an encoder; payloads longer than the effective maximum (the configured one,
    /// capped by what `H` can express) are refused.
    pub const fn new(config: Config) -> Self {
        const { assert!(H::MAX_HEADER_LEN >= 1 && H::MAX_HEADER_LEN <= MAX_HEADER_LEN) };
        Self {
            max: config.effective_max_frame_len::<H>(),
            config,
            _format: PhantomData,
        }
    }

    /// The header for a payload of `payload_len` bytes.
    ///
    /// # Errors
    /// [`EncodeError::FrameTooLong`] when the payload exceeds the maximum.
    #[inline]
    pub fn header(&self, payload_len: usize) -> Result<Header, EncodeError> {
        let too_long = EncodeError::FrameTooLong {
            len: payload_len,
            max: self.max,
        };
        if payload_len > self.max {
            return Err(too_long);
        }
        let payload = payload_len as u64;
        let value = if self.config.length_includes_header() {
            // For varints the header's width depends on the value it carries; two rounds
            // settle it because adding at most 10 bytes grows a varint by at most one byte.
            let mut value = payload
                .checked_add(H::header_len(payload) as u64)
                .ok_or(too_long)?;
            for _ in 0..2 {
                value = payload
                    .checked_add(H::header_len(value) as u64)
                    .ok_or(too_long)?;
            }
            value
        } else {
            payload
        };
        H::emit(value).ok_or(too_long)
    }

    /// Bytes a frame with a `payload_len`-byte payload takes on the wire.
    ///
    /// # Errors
    /// [`EncodeError::FrameTooLong`] when the payload exceeds the maximum.
    pub fn encoded_len(&self, payload_len: usize) -> Result<usize, EncodeError> {
        let header = self.header(payload_len)?;
        header
            .len()
            .checked_add(payload_len)
            .ok_or(EncodeError::FrameTooLong {
                len: payload_len,
                max: self.max,
            })
    }

    /// Writes header and payload to the start of `out`; returns the bytes written.
    ///
    /// # Errors
    /// [`EncodeError::FrameTooLong`] or [`EncodeError::BufferTooSmall`]; `out` is untouched then.
    pub fn encode(&self, payload: &[u8], out: &mut [u8]) -> Result<usize, EncodeError> {
        let header = self.header(payload.len())?;
        let needed = header
            .len()
            .checked_add(payload.len())
            .ok_or(EncodeError::FrameTooLong {
                len: payload.len(),
                max: self.max,
            })?;
        let available = out.len();
        let Some(frame) = out.get_mut(..needed) else {
            return Err(EncodeError::BufferTooSmall { needed, available });
        };
        let (head, body) = frame.split_at_mut(header.len());
        head.copy_from_slice(&header);
        body.copy_from_slice(payload);
        Ok(needed)
    }

    /// The effective maximum payload length.
    pub const fn max_frame_len(&self) -> usize {
        self.max
    }

    /// The configuration this encoder was built with.
    pub const fn config(&self) -> &Config {
        &self.config
    }
}

impl<H: LengthPrefix> Default for Encoder<H> {
    fn default() -> Self {
        Self::new(Config::new())
    }
}

impl<H> Clone for Encoder<H> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<H> Copy for Encoder<H> {}

impl<H> core::fmt::Debug for Encoder<H> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Encoder")
            .field("config", &self.config)
            .field("max", &self.max)
            .finish()
    }
}

#[cfg(feature = "defmt")]
impl<H> defmt::Format for Encoder<H> {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(
            f,
            "Encoder {{ config: {}, max: {=usize} }}",
            self.config,
            self.max
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::header::{BigEndian, BuffStreams, Varint32};

    #[test]
    fn encode_overflow() {
        let enc = Encoder::<BigEndian<4>>::default();
        assert_eq!(
            enc.header(4097),
            Err(EncodeError::FrameTooLong {
                len: 4097,
                max: 4096
            })
        );
        let enc = Encoder::<BigEndian<1>>::new(Config::new().with_max_frame_len(1000));
        assert_eq!(enc.max_frame_len(), 255);
        assert!(enc.header(256).is_err());
        let mut out = [0u8; 3];
        assert_eq!(
            enc.encode(b"abc", &mut out),
            Err(EncodeError::BufferTooSmall {
                needed: 4,
                available: 3
            })
        );
        assert_eq!(out, [0; 3]);
    }

    #[test]
    fn encode_includes_header() {
        let cfg = Config::new()
            .with_length_includes_header(true)
            .with_max_frame_len(1000);
        let enc = Encoder::<BigEndian<2>>::new(cfg);
        assert_eq!(&*enc.header(2).unwrap(), &[0, 4]);
        let enc = Encoder::<Varint32>::new(cfg);
        // 126 + 1 = 127 fits one byte; 127 + 2 = 129 needs two.
        assert_eq!(&*enc.header(126).unwrap(), &[127]);
        assert_eq!(&*enc.header(127).unwrap(), &[0x81, 0x01]);
    }

    /// Fuzz finding (`roundtrip`): with the length counting the header, LittleEndian<1>
    /// advertised a maximum of 255 but a 255-byte payload needs the field to say 256.
    #[test]
    fn regression_max_accounts_for_included_header() {
        use crate::header::LittleEndian;
        let cfg = Config::new()
            .with_length_includes_header(true)
            .with_max_frame_len(255);
        let enc = Encoder::<LittleEndian<1>>::new(cfg);
        assert_eq!(enc.max_frame_len(), 254);
        assert_eq!(&*enc.header(254).unwrap(), &[255]);
        assert_eq!(
            enc.header(255),
            Err(EncodeError::FrameTooLong { len: 255, max: 254 })
        );
    }

    #[test]
    fn encode_buffstreams_go_vectors() {
        let enc = Encoder::<BuffStreams<3>>::default();
        let mut out = [0u8; 14];
        assert_eq!(enc.encode(b"hello world", &mut out), Ok(14));
        assert_eq!(&out[..3], &[0x16, 0, 0]);
    }
}

//! The acknowledged mode's wire format: the writer's hello and the listener-to-writer frames
//! (welcome, ack, reply), parsed and emitted without allocation. The byte pictures are in the
//! [module documentation](super); [`field`] names each part of the hello.

use core::fmt;

use crate::config::Config;
use crate::header::LengthPrefix;
use crate::walk::frame_at;

/// Where each part of the [`Hello`] lies, as in the byte picture.
pub mod field {
    use core::ops::Range;

    /// Ten `FF` bytes.
    pub const PREFIX: Range<usize> = 0..10;
    /// `BSA`.
    pub const MAGIC: Range<usize> = 10..13;
    /// The version byte.
    pub const VERSION: usize = 13;
    /// The writer's session.
    pub const SESSION: Range<usize> = 14..30;
    /// The first sequence number this connection carries, big-endian.
    pub const FIRST_SEQ: Range<usize> = 30..38;
    /// The last one already written on an earlier connection, big-endian.
    pub const RESENT_UNTIL: Range<usize> = 38..46;
}

/// The version this crate speaks.
pub const VERSION: u8 = 1;
/// Ten `FF` bytes: the hello's first bytes, which no plain decoder accepts as a length.
pub const PREFIX: [u8; 10] = [0xFF; 10];
/// The hello's magic, after the prefix.
pub const MAGIC: [u8; 3] = *b"BSA";
/// Bytes of a [`Hello`] on the wire.
pub const HELLO_LEN: usize = 46;
/// Bytes of a [`Back::Welcome`] payload.
pub const WELCOME_LEN: usize = 10;
/// Bytes of a [`Back::Ack`] payload.
pub const ACK_LEN: usize = 9;
/// The kind byte of a [`Back::Reply`] payload (the reply follows it).
pub const REPLY: u8 = b'R';
const WELCOME: u8 = b'W';
const ACK: u8 = b'A';

/// A writer's identity: 16 random bytes, new for every writer (a restarted process is a new
/// session).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SessionId(pub [u8; 16]);

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// The writer's opening of a connection in the acknowledged mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Hello {
    /// The writer's session.
    pub session: SessionId,
    /// The sequence number of the first message on this connection (at least 1).
    pub first_seq: u64,
    /// The last sequence number already written on an earlier connection of this session
    /// (`first_seq - 1` when none was): messages up to it may have been delivered before.
    pub resent_until: u64,
}

/// Why bytes that should be a hello or a listener-to-writer frame are not one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum WireError {
    /// The connection does not start with the hello's prefix: the peer does not speak the
    /// acknowledged mode (a plain writer).
    NotAcked,
    /// The prefix is there but not the magic after it.
    BadMagic,
    /// A version this crate does not speak.
    Version(u8),
    /// `first_seq` is 0, or `resent_until` is below `first_seq - 1`.
    BadSequence,
    /// A listener-to-writer frame that is empty, of an unknown kind, or of the wrong length
    /// for its kind.
    BadFrame,
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotAcked => f.write_str("the peer does not speak the acknowledged mode"),
            Self::BadMagic => f.write_str("the acknowledged-mode hello has a bad magic"),
            Self::Version(v) => write!(
                f,
                "acknowledged-mode version {v} is not supported (this side speaks {VERSION})"
            ),
            Self::BadSequence => {
                f.write_str("the acknowledged-mode hello has invalid sequence numbers")
            }
            Self::BadFrame => f.write_str("a malformed acknowledged-mode frame"),
        }
    }
}

impl core::error::Error for WireError {}

/// The big-endian `u64` at `at` (zero when `buf` is too short: callers check lengths first).
fn u64_at(buf: &[u8], at: core::ops::Range<usize>) -> u64 {
    let mut b = [0u8; 8];
    if let Some(s) = buf.get(at) {
        b.copy_from_slice(s);
    }
    u64::from_be_bytes(b)
}

impl Hello {
    /// The hello's bytes.
    pub fn encode(&self) -> [u8; HELLO_LEN] {
        let mut out = [0u8; HELLO_LEN];
        fill(
            &mut out,
            PREFIX
                .iter()
                .chain(&MAGIC)
                .chain(&[VERSION])
                .chain(&self.session.0)
                .chain(&self.first_seq.to_be_bytes())
                .chain(&self.resent_until.to_be_bytes()),
        );
        out
    }

    /// Parses the start of a connection: `Ok(None)` while `buf` is a valid beginning of a
    /// hello shorter than [`HELLO_LEN`], the hello once it is whole (bytes after it are the
    /// first frames). Every byte is checked as soon as it is there, so a plain peer is told
    /// apart from its first byte.
    ///
    /// # Errors
    /// [`WireError`] for anything but a hello of this version.
    ///
    /// ```
    /// use buffstreams_framing::acked::{Hello, SessionId, WireError};
    ///
    /// let hello = Hello { session: SessionId([7; 16]), first_seq: 1, resent_until: 0 };
    /// let bytes = hello.encode();
    /// assert_eq!(Hello::parse(&bytes[..20]), Ok(None));
    /// assert_eq!(Hello::parse(&bytes), Ok(Some(hello)));
    /// // A plain stream: a 4-byte big-endian header of 5.
    /// assert_eq!(Hello::parse(&[0, 0, 0, 5]), Err(WireError::NotAcked));
    /// ```
    pub fn parse(buf: &[u8]) -> Result<Option<Self>, WireError> {
        for (i, &b) in buf.iter().take(field::MAGIC.end).enumerate() {
            let want = PREFIX.iter().chain(&MAGIC).nth(i).copied().unwrap_or(0);
            if b != want {
                return Err(if field::PREFIX.contains(&i) {
                    WireError::NotAcked
                } else {
                    WireError::BadMagic
                });
            }
        }
        if let Some(&v) = buf.get(field::VERSION)
            && v != VERSION
        {
            return Err(WireError::Version(v));
        }
        if buf.len() < HELLO_LEN {
            return Ok(None);
        }
        let mut session = [0u8; 16];
        if let Some(s) = buf.get(field::SESSION) {
            session.copy_from_slice(s);
        }
        let hello = Self {
            session: SessionId(session),
            first_seq: u64_at(buf, field::FIRST_SEQ),
            resent_until: u64_at(buf, field::RESENT_UNTIL),
        };
        if hello.first_seq == 0 || hello.resent_until < hello.first_seq - 1 {
            return Err(WireError::BadSequence);
        }
        Ok(Some(hello))
    }
}

/// A listener-to-writer frame's payload in the acknowledged mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Back<'a> {
    /// The answer to a hello: the session's messages up to `delivered` were handed to the
    /// application (0: none, or a session the listener does not know).
    Welcome {
        /// The version the listener speaks.
        version: u8,
        /// The last sequence number delivered.
        delivered: u64,
    },
    /// Every message up to `delivered` was handed to the application.
    Ack {
        /// The last sequence number delivered.
        delivered: u64,
    },
    /// A reply of the application.
    Reply(&'a [u8]),
}

impl<'a> Back<'a> {
    /// Parses a listener-to-writer frame's payload.
    ///
    /// # Errors
    /// [`WireError::BadFrame`] for an empty payload, an unknown kind or a wrong length;
    /// [`WireError::Version`] for a welcome of another version.
    ///
    /// ```
    /// use buffstreams_framing::acked::{Back, ack, welcome};
    ///
    /// assert_eq!(Back::parse(&ack(42)), Ok(Back::Ack { delivered: 42 }));
    /// assert_eq!(Back::parse(&welcome(0)), Ok(Back::Welcome { version: 1, delivered: 0 }));
    /// assert_eq!(Back::parse(b"Rpong"), Ok(Back::Reply(b"pong")));
    /// ```
    pub fn parse(payload: &'a [u8]) -> Result<Self, WireError> {
        match payload.split_first() {
            Some((&WELCOME, rest)) if rest.len() == WELCOME_LEN - 1 => {
                let version = rest.first().copied().unwrap_or(0);
                if version != VERSION {
                    return Err(WireError::Version(version));
                }
                Ok(Self::Welcome {
                    version,
                    delivered: u64_at(rest, 1..9),
                })
            }
            Some((&ACK, rest)) if rest.len() == ACK_LEN - 1 => Ok(Self::Ack {
                delivered: u64_at(rest, 0..8),
            }),
            Some((&REPLY, rest)) => Ok(Self::Reply(rest)),
            _ => Err(WireError::BadFrame),
        }
    }
}

/// A [`Back::Welcome`] payload.
pub fn welcome(delivered: u64) -> [u8; WELCOME_LEN] {
    let mut out = [0u8; WELCOME_LEN];
    fill(
        &mut out,
        [WELCOME, VERSION].iter().chain(&delivered.to_be_bytes()),
    );
    out
}

fn fill<'b>(out: &mut [u8], bytes: impl Iterator<Item = &'b u8>) {
    for (o, b) in out.iter_mut().zip(bytes) {
        *o = *b;
    }
}

/// A [`Back::Ack`] payload.
pub fn ack(delivered: u64) -> [u8; ACK_LEN] {
    let mut out = [0u8; ACK_LEN];
    fill(&mut out, [ACK].iter().chain(&delivered.to_be_bytes()));
    out
}

/// The configuration of listener-to-writer frames in the acknowledged mode, from the
/// messages' `config`: one byte more than a message (the kind), and always room for a
/// welcome.
///
/// ```
/// use buffstreams_framing::acked::back_config;
/// use buffstreams_framing::{BigEndian, Config};
///
/// assert_eq!(back_config::<BigEndian<4>>(Config::new()).max_frame_len(), 4097);
/// assert_eq!(back_config::<BigEndian<4>>(Config::new().with_max_frame_len(3)).max_frame_len(), 10);
/// ```
pub fn back_config<H: LengthPrefix>(config: Config) -> Config {
    let max = config.effective_max_frame_len::<H>();
    config.with_max_frame_len(max.saturating_add(1).max(WELCOME_LEN))
}

/// Whether a plain decoder of format `H` with `config` refuses a stream that starts with the
/// hello (so a listener without the mode can never misread an acknowledged writer, and an
/// acknowledged listener can tell every plain stream from a hello). True for every varint
/// and BuffStreams format, and for fixed-width headers whose largest value exceeds the
/// maximum; false for a 1- or 2-byte fixed-width header with a maximum of at least 255 or
/// 65535 bytes: the acknowledged mode refuses such a configuration.
///
/// ```
/// use buffstreams_framing::acked::plain_decoder_refuses_hello;
/// use buffstreams_framing::{BigEndian, Config, Varint32};
///
/// assert!(plain_decoder_refuses_hello::<BigEndian<4>>(&Config::new()));
/// assert!(plain_decoder_refuses_hello::<Varint32>(&Config::new().with_max_frame_len(1 << 30)));
/// assert!(!plain_decoder_refuses_hello::<BigEndian<1>>(&Config::new()));
/// ```
pub fn plain_decoder_refuses_hello<H: LengthPrefix>(config: &Config) -> bool {
    let mut start = [0u8; HELLO_LEN];
    fill(&mut start, PREFIX.iter().chain(&MAGIC));
    frame_at::<H>(config, &start).is_err()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BigEndian, BuffStreams, LittleEndian, Varint32, Varint64};
    use proptest::prelude::*;

    fn hello(first_seq: u64, resent_until: u64) -> Hello {
        Hello {
            session: SessionId(*b"0123456789abcdef"),
            first_seq,
            resent_until,
        }
    }

    #[test]
    fn the_byte_picture_holds() {
        let bytes = hello(0x0102, 0x0304).encode();
        assert_eq!(&bytes[..10], &[0xff; 10]);
        assert_eq!(&bytes[10..14], b"BSA\x01");
        assert_eq!(&bytes[14..30], b"0123456789abcdef");
        assert_eq!(&bytes[30..38], &[0, 0, 0, 0, 0, 0, 1, 2]);
        assert_eq!(&bytes[38..46], &[0, 0, 0, 0, 0, 0, 3, 4]);
        assert_eq!(ack(5), [b'A', 0, 0, 0, 0, 0, 0, 0, 5]);
        assert_eq!(welcome(5), [b'W', 1, 0, 0, 0, 0, 0, 0, 0, 5]);
    }

    #[test]
    fn each_wrong_byte_is_named() {
        let good = hello(1, 0).encode();
        for i in 0..14 {
            let mut bad = good;
            bad[i] ^= 0x01;
            let want = match i {
                0..10 => WireError::NotAcked,
                10..13 => WireError::BadMagic,
                _ => WireError::Version(VERSION ^ 1),
            };
            assert_eq!(Hello::parse(&bad), Err(want), "byte {i}");
            // Already from the bytes up to the wrong one.
            assert_eq!(Hello::parse(&bad[..=i]), Err(want), "byte {i}");
        }
        assert_eq!(
            Hello::parse(&hello(0, 0).encode()),
            Err(WireError::BadSequence)
        );
        assert_eq!(
            Hello::parse(&hello(5, 3).encode()),
            Err(WireError::BadSequence)
        );
        assert_eq!(
            Hello::parse(&hello(5, 4).encode()).unwrap(),
            Some(hello(5, 4))
        );
        assert_eq!(
            Hello::parse(&hello(5, 9).encode()).unwrap(),
            Some(hello(5, 9))
        );
    }

    #[test]
    fn back_frames_of_the_wrong_length_or_kind_are_refused() {
        assert_eq!(Back::parse(&[]), Err(WireError::BadFrame));
        assert_eq!(Back::parse(&ack(1)[..8]), Err(WireError::BadFrame));
        assert_eq!(Back::parse(&[b'A'; 10]), Err(WireError::BadFrame));
        assert_eq!(Back::parse(&welcome(1)[..9]), Err(WireError::BadFrame));
        assert_eq!(Back::parse(b"X"), Err(WireError::BadFrame));
        let mut w = welcome(1);
        w[1] = 2;
        assert_eq!(Back::parse(&w), Err(WireError::Version(2)));
        assert_eq!(Back::parse(b"R"), Ok(Back::Reply(b"")));
    }

    #[test]
    fn plain_decoders_refuse_the_hello() {
        let c = Config::new();
        assert!(plain_decoder_refuses_hello::<BigEndian<3>>(&c));
        assert!(plain_decoder_refuses_hello::<BigEndian<8>>(&c));
        assert!(plain_decoder_refuses_hello::<LittleEndian<4>>(&c));
        assert!(plain_decoder_refuses_hello::<Varint32>(
            &c.with_max_frame_len(usize::MAX)
        ));
        assert!(plain_decoder_refuses_hello::<Varint64>(
            &c.with_max_frame_len(usize::MAX)
        ));
        assert!(plain_decoder_refuses_hello::<BuffStreams<3>>(
            &c.with_max_frame_len(usize::MAX)
        ));
        assert!(plain_decoder_refuses_hello::<BuffStreams<10>>(
            &c.with_max_frame_len(usize::MAX)
        ));
        assert!(plain_decoder_refuses_hello::<BigEndian<2>>(
            &c.with_max_frame_len(65534)
        ));
        assert!(!plain_decoder_refuses_hello::<BigEndian<2>>(
            &c.with_max_frame_len(65535)
        ));
        // A 3-byte header of all FF is 16 MiB - 1: a valid length when the maximum allows it.
        assert!(!plain_decoder_refuses_hello::<BigEndian<3>>(
            &c.with_max_frame_len(1 << 24)
        ));
    }

    proptest! {
        #[test]
        fn hellos_round_trip_at_every_cut(
            session in any::<[u8; 16]>(),
            first_seq in 1u64..,
            extra in any::<u64>(),
            cut in 0usize..=HELLO_LEN,
        ) {
            let h = Hello {
                session: SessionId(session),
                first_seq,
                resent_until: (first_seq - 1).saturating_add(extra),
            };
            let bytes = h.encode();
            let want = if cut == HELLO_LEN { Some(h) } else { None };
            prop_assert_eq!(Hello::parse(&bytes[..cut]), Ok(want));
        }

        #[test]
        fn any_bytes_parse_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Hello::parse(&bytes);
            let _ = Back::parse(&bytes);
        }
    }
}

//! The tokio-util codec: see [`Codec`].

use core::marker::PhantomData;

use bytes::{Buf, BufMut, BytesMut};

use crate::decoder::{Verdict, judge};
use crate::{Config, DecodeError, EncodeError, Encoder, LengthPrefix, Parsed};

/// A [tokio-util] codec for header format `H`: what a tokio user puts in `Framed`,
/// `FramedRead` or `FramedWrite` in place of `LengthDelimitedCodec`. It decodes to `BytesMut`
/// payloads and encodes anything that is `AsRef<[u8]>`.
///
/// ```
/// use buffstreams_framing::{Codec, Config, Varint32};
/// use bytes::Bytes;
/// use futures_util::{SinkExt, StreamExt};
/// use tokio::net::{TcpListener, TcpStream};
/// use tokio_util::codec::Framed;
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let config = Config::new().with_max_frame_len(64 * 1024);
/// let listener = TcpListener::bind("127.0.0.1:0").await?;
/// let addr = listener.local_addr()?;
/// let server = tokio::spawn(async move {
///     let (socket, _) = listener.accept().await?;
///     let mut frames = Framed::new(socket, Codec::<Varint32>::new(config));
///     let mut got = Vec::new();
///     while let Some(frame) = frames.next().await {
///         got.push(frame?.freeze()); // a BytesMut, split off the read buffer without a copy
///     }
///     Ok::<_, buffstreams_framing::CodecError>(got)
/// });
/// let mut out = Framed::new(TcpStream::connect(addr).await?, Codec::<Varint32>::new(config));
/// out.send(Bytes::from_static(b"hello")).await?;
/// out.send(&b"tokio"[..]).await?; // anything that is AsRef<[u8]>
/// drop(out);
/// assert_eq!(server.await.unwrap()?, ["hello", "tokio"]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
///
/// What differs from `LengthDelimitedCodec`:
/// - Every format: [`BigEndian`](crate::BigEndian) and [`LittleEndian`](crate::LittleEndian)
///   (the bytes `LengthDelimitedCodec` writes with `length_field_length(N)`, and
///   `.little_endian()`; [`Config::with_length_includes_header`] is its
///   `length_adjustment(-N)`), the protobuf varints and Go BuffStreams' header.
/// - Nothing is reserved on a peer's word. `LengthDelimitedCodec` reserves room for the length
///   a header declares as soon as it has read the header, so one 4-byte header makes a
///   connection allocate up to its maximum (8 MiB by default). This codec asks for nothing:
///   the read buffer grows with the bytes that arrive (`FramedRead` doubles it as it fills),
///   never with the bytes a peer promised.
/// - The same limits and typed errors as the crate's [`Decoder`](crate::Decoder) (the default
///   maximum is 4 KiB, not 8 MiB), [`Oversize::Skip`](crate::Oversize::Skip) included (skipped
///   frames are counted: [`Codec::skipped`]), and a stream that ends inside a frame is
///   [`CodecError::UnexpectedEof`], not an untyped `io::Error`.
///
/// [tokio-util]: https://docs.rs/tokio-util/0.7/tokio_util/codec/index.html
///
/// A decoding error is final: like the crate's decoder, the codec keeps returning it (a
/// stream cannot be resynchronised after a bad header).
pub struct Codec<H> {
    encoder: Encoder<H>,
    config: Config,
    state: State,
    skipped: u64,
    _format: PhantomData<fn() -> H>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Waiting for a whole header at the start of the buffer.
    Header,
    /// The header (`header_len` bytes, still in the buffer) declared `len` bytes.
    Body {
        header_len: usize,
        len: usize,
    },
    /// Discarding `remaining` bytes of an oversize payload.
    Skip {
        remaining: u64,
    },
    Failed(DecodeError),
}

impl<H: LengthPrefix> Codec<H> {
    /// A codec with `config`'s maximum, length convention and oversize policy.
    pub const fn new(config: Config) -> Self {
        Self {
            encoder: Encoder::new(config),
            config,
            state: State::Header,
            skipped: 0,
            _format: PhantomData,
        }
    }

    /// The largest payload it decodes or encodes: the configured maximum, capped by what `H`
    /// can express.
    pub const fn max_frame_len(&self) -> usize {
        self.encoder.max_frame_len()
    }

    /// The configuration.
    pub const fn config(&self) -> &Config {
        &self.config
    }

    /// Oversize frames discarded so far under [`Oversize::Skip`](crate::Oversize::Skip).
    pub const fn skipped(&self) -> u64 {
        self.skipped
    }

    /// Whether a frame has begun and not ended (its header or part of its payload read).
    pub fn is_mid_frame(&self, buffered: &BytesMut) -> bool {
        match self.state {
            State::Header => !buffered.is_empty(),
            State::Body { .. } | State::Skip { .. } => true,
            State::Failed(_) => false,
        }
    }

    fn fail(&mut self, e: DecodeError) -> CodecError {
        self.state = State::Failed(e);
        CodecError::Decode(e)
    }
}

impl<H: LengthPrefix> Default for Codec<H> {
    /// [`Config::new`]: a 4 KiB maximum.
    fn default() -> Self {
        Self::new(Config::new())
    }
}

impl<H: LengthPrefix> Clone for Codec<H> {
    /// A codec with the same configuration, in its initial state (as tokio-util's codecs are
    /// cloned: one per connection).
    fn clone(&self) -> Self {
        Self {
            encoder: Encoder::new(self.config),
            config: self.config,
            state: State::Header,
            skipped: 0,
            _format: PhantomData,
        }
    }
}

impl<H> core::fmt::Debug for Codec<H> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Codec")
            .field("format", &core::any::type_name::<H>())
            .field("config", &self.config)
            .field("state", &self.state)
            .field("skipped", &self.skipped)
            .finish()
    }
}

impl<H: LengthPrefix> tokio_util::codec::Decoder for Codec<H> {
    type Item = BytesMut;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<BytesMut>, CodecError> {
        loop {
            match self.state {
                State::Header => match H::parse(src) {
                    Ok(Parsed::Complete { value, header_len }) => {
                        let max = self.max_frame_len();
                        match judge(&self.config, max, value, header_len) {
                            Ok(Verdict::Frame(len)) => self.state = State::Body { header_len, len },
                            Ok(Verdict::Skip(len)) => {
                                src.advance(header_len);
                                self.state = State::Skip { remaining: len };
                            }
                            Err(e) => return Err(self.fail(e)),
                        }
                    }
                    Ok(Parsed::Incomplete) if src.len() < H::MAX_HEADER_LEN => return Ok(None),
                    // A format that wants more than its own width is broken: never wait on it.
                    Ok(Parsed::Incomplete) => return Err(self.fail(DecodeError::VarintOverflow)),
                    Err(e) => return Err(self.fail(e)),
                },
                State::Body { header_len, len } => {
                    if src.len().saturating_sub(header_len) < len {
                        return Ok(None);
                    }
                    src.advance(header_len);
                    self.state = State::Header;
                    return Ok(Some(src.split_to(len)));
                }
                State::Skip { remaining } => {
                    let n = usize::try_from(remaining).map_or(src.len(), |r| r.min(src.len()));
                    src.advance(n);
                    let remaining = remaining.saturating_sub(n as u64);
                    if remaining > 0 {
                        self.state = State::Skip { remaining };
                        return Ok(None);
                    }
                    self.skipped = self.skipped.saturating_add(1);
                    self.state = State::Header;
                }
                State::Failed(e) => return Err(CodecError::Decode(e)),
            }
        }
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<BytesMut>, CodecError> {
        match self.decode(src)? {
            Some(frame) => Ok(Some(frame)),
            None if self.is_mid_frame(src) => {
                let buffered = src.len();
                src.clear();
                self.state = State::Header;
                Err(CodecError::UnexpectedEof { buffered })
            }
            None => Ok(None),
        }
    }
}

impl<H: LengthPrefix, T: AsRef<[u8]>> tokio_util::codec::Encoder<T> for Codec<H> {
    type Error = CodecError;

    fn encode(&mut self, item: T, dst: &mut BytesMut) -> Result<(), CodecError> {
        let payload = item.as_ref();
        let header = self.encoder.header(payload.len())?;
        dst.reserve(header.len() + payload.len());
        dst.put_slice(&header);
        dst.put_slice(payload);
        Ok(())
    }
}

/// Why a [`Codec`] failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum CodecError {
    /// The peer's bytes are not a valid stream (the codec keeps returning this error).
    Decode(DecodeError),
    /// A payload could not be framed (longer than the maximum); nothing was written.
    Encode(EncodeError),
    /// The stream ended inside a frame, with this many bytes of it buffered.
    UnexpectedEof {
        /// Bytes of the unfinished frame that had arrived.
        buffered: usize,
    },
    /// The socket failed.
    Io(std::io::Error),
}

impl core::fmt::Display for CodecError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Decode(e) => write!(f, "{e}"),
            Self::Encode(e) => write!(f, "{e}"),
            Self::UnexpectedEof { buffered } => write!(
                f,
                "stream ended inside a frame ({buffered} bytes of it had arrived)"
            ),
            Self::Io(e) => write!(f, "{e}"),
        }
    }
}

impl core::error::Error for CodecError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Self::Decode(e) => Some(e),
            Self::Encode(e) => Some(e),
            Self::Io(e) => Some(e),
            Self::UnexpectedEof { .. } => None,
        }
    }
}

impl From<std::io::Error> for CodecError {
    fn from(e: std::io::Error) -> Self {
        Self::Io(e)
    }
}

impl From<DecodeError> for CodecError {
    fn from(e: DecodeError) -> Self {
        Self::Decode(e)
    }
}

impl From<EncodeError> for CodecError {
    fn from(e: EncodeError) -> Self {
        Self::Encode(e)
    }
}

impl From<CodecError> for std::io::Error {
    /// For code that speaks `io::Result`: the socket's own error as it was, the rest as
    /// `InvalidData` (`UnexpectedEof` as `UnexpectedEof`) carrying the typed error.
    fn from(e: CodecError) -> Self {
        use std::io::ErrorKind;
        match e {
            CodecError::Io(e) => e,
            CodecError::UnexpectedEof { .. } => Self::new(ErrorKind::UnexpectedEof, e),
            e => Self::new(ErrorKind::InvalidData, e),
        }
    }
}

//! Blocking frame reader and writer over `embedded_io::{Read, Write}`.
//!
//! The reader reads big chunks and decodes every frame in a chunk before it reads again (never
//! one `read_exact` per header and per body); frames inside a chunk are borrowed from it.
//! The writer coalesces small frames in its buffer and writes big payloads straight through.

use embedded_io::{Read, Write};

use crate::buffered::{Chunks, Coalesce, Plan};
use crate::decoder::{Decoder, Event, Found};
use crate::encoder::Encoder;
use crate::error::{ReadError, WriteError};
use crate::header::LengthPrefix;
use crate::storage::Storage;

/// Reads frames from an `embedded_io::Read`.
///
/// `buf` is the chunk buffer (`[u8; N]`, `&mut [u8]`, `Vec<u8>`…): each `read` call fills as
/// much of it as the reader gives, and every frame inside is decoded before the next read. It
/// must not be empty (an empty buffer reads as end of stream).
///
/// # Examples
/// ```
/// use buffstreams_framing::{BigEndian, Config, Decoder, FrameReader};
///
/// let wire: &[u8] = &[0, 0, 0, 2, b'h', b'i', 0, 0, 0, 1, b'!'];
/// let decoder = Decoder::<BigEndian<4>, _>::new(Config::new(), [0u8; 256]);
/// let mut reader = FrameReader::new(wire, decoder, [0u8; 1024]);
/// assert_eq!(reader.read_frame().unwrap(), Some(&b"hi"[..]));
/// assert_eq!(reader.read_frame().unwrap(), Some(&b"!"[..]));
/// assert_eq!(reader.read_frame().unwrap(), None); // clean end of stream
/// ```
pub struct FrameReader<R, H, S, B> {
    inner: R,
    chunks: Chunks<H, S, B>,
}

impl<R: Read, H: LengthPrefix, S: Storage, B: AsMut<[u8]>> FrameReader<R, H, S, B> {
    /// Wraps `inner`, decoding with `decoder` and reading into `buf`.
    pub fn new(inner: R, decoder: Decoder<H, S>, buf: B) -> Self {
        Self {
            inner,
            chunks: Chunks::new(decoder, buf),
        }
    }

    /// The next frame or event; `Ok(None)` at a clean end of stream.
    ///
    /// # Errors
    /// [`ReadError::Io`] from the reader, [`ReadError::Decode`] on an invalid stream,
    /// [`ReadError::UnexpectedEof`] when the stream ends inside a frame.
    pub fn read_event(&mut self) -> Result<Option<Event<'_>>, ReadError<R::Error>> {
        match self.fill(false)? {
            Some(found) => Ok(Some(self.chunks.event(found)?)),
            None => Ok(None),
        }
    }

    /// The next frame, passing over [`Event::Skipped`]; `Ok(None)` at a clean end of stream.
    ///
    /// # Errors
    /// As [`read_event`](Self::read_event).
    pub fn read_frame(&mut self) -> Result<Option<&[u8]>, ReadError<R::Error>> {
        match self.fill(true)? {
            Some(found) => Ok(Some(self.chunks.frame(found)?)),
            None => Ok(None),
        }
    }

    /// Reads until an item is buffered (where it lies) or the stream ends cleanly (`None`).
    fn fill(&mut self, frames_only: bool) -> Result<Option<Found>, ReadError<R::Error>> {
        loop {
            if let Some(found) = self.chunks.poll_buffered(frames_only)? {
                return Ok(Some(found));
            }
            let n = self
                .inner
                .read(self.chunks.spare())
                .map_err(ReadError::Io)?;
            if !self.chunks.filled(n)? {
                return Ok(None);
            }
        }
    }

    /// Bytes read from the inner reader that no frame has taken yet. When it is 0, the next
    /// read waits for the peer: the moment for a server to flush the replies to what it has
    /// read (a peer that waits for replies has sent its requests whole, so bytes still
    /// buffered are frames, or the rest of one on its way).
    pub fn buffered(&self) -> usize {
        self.chunks.buffered()
    }

    /// The decoder.
    pub fn decoder(&self) -> &Decoder<H, S> {
        &self.chunks.decoder
    }

    /// The wrapped reader.
    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    /// The wrapped reader, mutably. Reading from it directly loses sync with the frames.
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    /// Gives back the reader; bytes buffered but not yet decoded are dropped.
    pub fn into_inner(self) -> R {
        self.inner
    }
}

impl<R: core::fmt::Debug, H, S, B: AsMut<[u8]>> core::fmt::Debug for FrameReader<R, H, S, B> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let mut d = f.debug_struct("FrameReader");
        d.field("inner", &self.inner);
        self.chunks.debug_fields(&mut d);
        d.finish()
    }
}

fn write_all<W: Write>(w: &mut W, mut bytes: &[u8]) -> Result<(), WriteError<W::Error>> {
    while !bytes.is_empty() {
        match w.write(bytes) {
            Ok(0) => return Err(WriteError::WriteZero),
            Ok(n) => bytes = bytes.get(n..).unwrap_or_default(),
            Err(e) => return Err(WriteError::Io(e)),
        }
    }
    Ok(())
}

/// Writes frames to an `embedded_io::Write`, coalescing small frames in `buf`.
///
/// Frames sit in the buffer until it fills, [`flush`](Self::flush) is called, or a frame too
/// big to buffer goes out (then the buffer is completed with its start and the rest is written
/// straight from the caller's slice). Any buffer size works: one smaller than a frame's
/// header (even an empty one) only means every frame is written unbuffered, header and
/// payload in two writes.
///
/// # Warning
/// After an I/O error, part of a frame may have been written: the stream is out of sync and the
/// connection should be closed.
///
/// # Examples
/// ```
/// use buffstreams_framing::{BigEndian, Encoder, FrameWriter};
///
/// let mut wire = [0u8; 32];
/// let mut writer = FrameWriter::new(&mut wire[..], Encoder::<BigEndian<4>>::default(), [0u8; 16]);
/// assert_eq!(writer.write_frame(b"hi").unwrap(), 6);
/// writer.flush().unwrap();
/// drop(writer);
/// assert_eq!(&wire[..6], &[0, 0, 0, 2, b'h', b'i']);
/// ```
pub struct FrameWriter<W, H, B> {
    inner: W,
    out: Coalesce<H, B>,
}

impl<W: core::fmt::Debug, H, B> core::fmt::Debug for FrameWriter<W, H, B> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let mut d = f.debug_struct("FrameWriter");
        d.field("inner", &self.inner);
        self.out.debug_fields(&mut d);
        d.finish()
    }
}

impl<W: Write, H: LengthPrefix, B: AsMut<[u8]>> FrameWriter<W, H, B> {
    /// Wraps `inner`, framing with `encoder` and buffering in `buf`.
    pub fn new(inner: W, encoder: Encoder<H>, buf: B) -> Self {
        Self {
            inner,
            out: Coalesce::new(encoder, buf),
        }
    }

    /// Frames `payload`; returns the bytes it takes on the wire (header included). The frame
    /// may stay buffered until [`flush`](Self::flush).
    ///
    /// # Errors
    /// [`WriteError::Encode`] when the payload cannot be framed (nothing written), otherwise the
    /// writer's error.
    pub fn write_frame(&mut self, payload: &[u8]) -> Result<usize, WriteError<W::Error>> {
        loop {
            match self.out.push(payload)? {
                (n, Plan::Buffered) => return Ok(n),
                (_, Plan::FlushFirst) => self.write_buffer()?,
                (n, Plan::Direct(header)) => {
                    write_all(&mut self.inner, &header)?;
                    write_all(&mut self.inner, payload)?;
                    return Ok(n);
                }
                (n, Plan::Through(done)) => {
                    self.write_buffer()?;
                    write_all(&mut self.inner, payload.get(done..).unwrap_or_default())?;
                    return Ok(n);
                }
            }
        }
    }

    /// Writes every buffered byte to the inner writer, then flushes it.
    ///
    /// # Errors
    /// The writer's error.
    pub fn flush(&mut self) -> Result<(), WriteError<W::Error>> {
        self.write_buffer()?;
        self.inner.flush().map_err(WriteError::Io)
    }

    fn write_buffer(&mut self) -> Result<(), WriteError<W::Error>> {
        let r = write_all(&mut self.inner, self.out.pending());
        self.out.clear();
        r
    }

    /// Bytes waiting in the buffer.
    pub fn buffered(&self) -> usize {
        self.out.len
    }

    /// The wrapped writer.
    pub fn get_ref(&self) -> &W {
        &self.inner
    }

    /// The wrapped writer, mutably. Writing to it directly corrupts the frame stream.
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }

    /// Gives back the writer; call [`flush`](Self::flush) first or buffered frames are lost.
    pub fn into_inner(self) -> W {
        self.inner
    }
}

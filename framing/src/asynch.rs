//! Async twins of the frame reader and writer, over `embedded_io_async`.
//!
//! They share the buffering and decoding logic with the blocking helpers; only the I/O calls
//! are awaited. Work with embassy-net sockets, or with tokio/std through `embedded-io-adapters`.

use embedded_io_async::{Read, Write};

use crate::buffered::{Chunks, Coalesce, Plan};
use crate::decoder::{Decoder, Event, Found};
use crate::encoder::Encoder;
use crate::error::{ReadError, WriteError};
use crate::header::LengthPrefix;
use crate::storage::Storage;

/// Reads frames from an `embedded_io_async::Read`; see [`FrameReader`](crate::FrameReader).
pub struct AsyncFrameReader<R, H, S, B> {
    inner: R,
    chunks: Chunks<H, S, B>,
}

impl<R: core::fmt::Debug, H, S, B: AsMut<[u8]>> core::fmt::Debug for AsyncFrameReader<R, H, S, B> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let mut d = f.debug_struct("AsyncFrameReader");
        d.field("inner", &self.inner);
        self.chunks.debug_fields(&mut d);
        d.finish()
    }
}

impl<R: Read, H: LengthPrefix, S: Storage, B: AsMut<[u8]>> AsyncFrameReader<R, H, S, B> {
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
    /// As [`FrameReader::read_event`](crate::FrameReader::read_event).
    pub async fn read_event(&mut self) -> Result<Option<Event<'_>>, ReadError<R::Error>> {
        match self.fill(false).await? {
            Some(found) => Ok(Some(self.chunks.event(found)?)),
            None => Ok(None),
        }
    }

    /// The next frame, passing over skipped ones; `Ok(None)` at a clean end of stream.
    ///
    /// # Errors
    /// As [`FrameReader::read_event`](crate::FrameReader::read_event).
    pub async fn read_frame(&mut self) -> Result<Option<&[u8]>, ReadError<R::Error>> {
        match self.fill(true).await? {
            Some(found) => Ok(Some(self.chunks.frame(found)?)),
            None => Ok(None),
        }
    }

    /// Reads until an item is buffered (where it lies) or the stream ends cleanly (`None`).
    async fn fill(&mut self, frames_only: bool) -> Result<Option<Found>, ReadError<R::Error>> {
        loop {
            if let Some(found) = self.chunks.poll_buffered(frames_only)? {
                return Ok(Some(found));
            }
            let n = self
                .inner
                .read(self.chunks.spare())
                .await
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

async fn write_all<W: Write>(w: &mut W, mut bytes: &[u8]) -> Result<(), WriteError<W::Error>> {
    while !bytes.is_empty() {
        match w.write(bytes).await {
            Ok(0) => return Err(WriteError::WriteZero),
            Ok(n) => bytes = bytes.get(n..).unwrap_or_default(),
            Err(e) => return Err(WriteError::Io(e)),
        }
    }
    Ok(())
}

/// Writes frames to an `embedded_io_async::Write`; see [`FrameWriter`](crate::FrameWriter).
pub struct AsyncFrameWriter<W, H, B> {
    inner: W,
    out: Coalesce<H, B>,
}

impl<W: core::fmt::Debug, H, B> core::fmt::Debug for AsyncFrameWriter<W, H, B> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let mut d = f.debug_struct("AsyncFrameWriter");
        d.field("inner", &self.inner);
        self.out.debug_fields(&mut d);
        d.finish()
    }
}

impl<W: Write, H: LengthPrefix, B: AsMut<[u8]>> AsyncFrameWriter<W, H, B> {
    /// Wraps `inner`, framing with `encoder` and buffering in `buf`.
    pub fn new(inner: W, encoder: Encoder<H>, buf: B) -> Self {
        Self {
            inner,
            out: Coalesce::new(encoder, buf),
        }
    }

    /// Frames `payload`; returns the bytes it takes on the wire. It may stay buffered until
    /// [`flush`](Self::flush).
    ///
    /// # Errors
    /// As [`FrameWriter::write_frame`](crate::FrameWriter::write_frame).
    pub async fn write_frame(&mut self, payload: &[u8]) -> Result<usize, WriteError<W::Error>> {
        loop {
            match self.out.push(payload)? {
                (n, Plan::Buffered) => return Ok(n),
                (_, Plan::FlushFirst) => self.write_buffer().await?,
                (n, Plan::Direct(header)) => {
                    write_all(&mut self.inner, &header).await?;
                    write_all(&mut self.inner, payload).await?;
                    return Ok(n);
                }
                (n, Plan::Through(done)) => {
                    self.write_buffer().await?;
                    write_all(&mut self.inner, payload.get(done..).unwrap_or_default()).await?;
                    return Ok(n);
                }
            }
        }
    }

    /// Writes every buffered byte, then flushes the inner writer.
    ///
    /// # Errors
    /// The writer's error.
    pub async fn flush(&mut self) -> Result<(), WriteError<W::Error>> {
        self.write_buffer().await?;
        self.inner.flush().await.map_err(WriteError::Io)
    }

    async fn write_buffer(&mut self) -> Result<(), WriteError<W::Error>> {
        let r = write_all(&mut self.inner, self.out.pending()).await;
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

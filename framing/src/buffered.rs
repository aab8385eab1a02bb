//! Read- and write-side buffering shared by the blocking helpers ([`io`](crate::io)) and
//! their async twins ([`asynch`](crate::asynch)): only the I/O calls differ between them.
//!
//! - [`Chunks`]: a chunk buffer and the decoder. Every frame in a chunk is decoded before
//!   the next read; a frame inside the chunk is borrowed from it.
//! - [`Coalesce`] and [`Plan`]: a write buffer that gathers small frames, and the plan for
//!   one frame (buffered, flush first, partly buffered then written through, or unbuffered).

use crate::decoder::{Decoder, Event, Found};
use crate::encoder::Encoder;
use crate::error::{EncodeError, ReadError};
use crate::header::{Header, LengthPrefix};
use crate::storage::Storage;

/// Read-side state shared by the blocking and async readers: a chunk buffer and the decoder.
pub(crate) struct Chunks<H, S, B> {
    pub(crate) decoder: Decoder<H, S>,
    pub(crate) buf: B,
    pos: usize,
    end: usize,
}

impl<H, S, B> Chunks<H, S, B> {
    /// Bytes read but not yet decoded.
    pub(crate) fn buffered(&self) -> usize {
        self.end.saturating_sub(self.pos)
    }

    /// `Debug` for the readers: the decoder and how much is buffered.
    pub(crate) fn debug_fields(&self, d: &mut core::fmt::DebugStruct<'_, '_>) {
        d.field("decoder", &self.decoder)
            .field("buffered", &self.buffered());
    }
}

impl<H: LengthPrefix, S: Storage, B: AsMut<[u8]>> Chunks<H, S, B> {
    pub(crate) fn new(decoder: Decoder<H, S>, buf: B) -> Self {
        Self {
            decoder,
            buf,
            pos: 0,
            end: 0,
        }
    }

    /// Decodes from the buffered bytes until an item is found (where it lies, relative to
    /// the buffer) or they run out. With `frames_only`, skipped-frame events are passed over.
    #[inline]
    pub(crate) fn poll_buffered(
        &mut self,
        frames_only: bool,
    ) -> Result<Option<Found>, crate::DecodeError> {
        while self.pos < self.end {
            let input = self
                .buf
                .as_mut()
                .get(self.pos..self.end)
                .unwrap_or_default();
            let decoded = self.decoder.decode(input)?;
            let start = self.pos;
            self.pos = self.pos.saturating_add(decoded.consumed).min(self.end);
            let wanted = decoded
                .found
                .filter(|f| !(frames_only && matches!(f, Found::Skipped { .. })));
            if let Some(found) = wanted {
                return Ok(Some(found.offset(start)));
            }
        }
        Ok(None)
    }

    /// The buffer to read into; everything buffered has been consumed.
    #[inline]
    pub(crate) fn spare(&mut self) -> &mut [u8] {
        self.pos = 0;
        self.end = 0;
        self.buf.as_mut()
    }

    /// Records a read of `n` bytes into [`spare`](Self::spare); `Ok(false)` on clean end of stream.
    #[inline]
    pub(crate) fn filled<E>(&mut self, n: usize) -> Result<bool, ReadError<E>> {
        if n == 0 {
            return if self.decoder.is_mid_frame() {
                Err(ReadError::UnexpectedEof)
            } else {
                Ok(false)
            };
        }
        self.end = n.min(self.buf.as_mut().len());
        Ok(true)
    }

    /// The payload of a frame `poll_buffered(true)` found. `Storage` only when a custom
    /// storage does not hold what it was given.
    #[inline]
    pub(crate) fn frame(&mut self, found: Found) -> Result<&[u8], crate::DecodeError> {
        let buf: &[u8] = self.buf.as_mut();
        self.decoder
            .payload(buf, found)
            .ok_or(crate::DecodeError::Storage)
    }

    /// The item `poll_buffered` found. `Storage` only as for [`frame`](Self::frame).
    #[inline]
    pub(crate) fn event(&mut self, found: Found) -> Result<Event<'_>, crate::DecodeError> {
        let buf: &[u8] = self.buf.as_mut();
        self.decoder
            .event(buf, found)
            .ok_or(crate::DecodeError::Storage)
    }
}

/// Write-side buffer shared by the blocking and async writers.
pub(crate) struct Coalesce<H, B> {
    pub(crate) encoder: Encoder<H>,
    pub(crate) buf: B,
    pub(crate) len: usize,
}

/// How a frame goes out.
pub(crate) enum Plan {
    /// Header and payload were copied into the buffer.
    Buffered,
    /// Write the buffer out first, then call `push` again.
    FlushFirst,
    /// Too big to buffer: header and the first `n` payload bytes were copied in; write the
    /// buffer, then the rest of the payload straight from the caller's slice.
    Through(usize),
    /// The buffer cannot even hold the header (it is empty): write header and payload directly.
    Direct(Header),
}

impl<H: LengthPrefix, B: AsMut<[u8]>> Coalesce<H, B> {
    pub(crate) fn new(encoder: Encoder<H>, buf: B) -> Self {
        Self {
            encoder,
            buf,
            len: 0,
        }
    }

    fn copy_in(&mut self, bytes: &[u8]) -> usize {
        let free = self.buf.as_mut().get_mut(self.len..).unwrap_or_default();
        let n = free.len().min(bytes.len());
        if let (Some(d), Some(s)) = (free.get_mut(..n), bytes.get(..n)) {
            d.copy_from_slice(s);
        }
        self.len = self.len.saturating_add(n);
        n
    }

    /// Plans one frame; `Err` when it cannot be framed (nothing was buffered then).
    #[inline]
    pub(crate) fn push(&mut self, payload: &[u8]) -> Result<(usize, Plan), EncodeError> {
        let header = self.encoder.header(payload.len())?;
        let total = header.len().saturating_add(payload.len());
        let cap = self.buf.as_mut().len();
        let free = cap.saturating_sub(self.len);
        if total <= free {
            self.copy_in(&header);
            self.copy_in(payload);
            return Ok((total, Plan::Buffered));
        }
        if self.len > 0 && (total <= cap || free < header.len()) {
            return Ok((total, Plan::FlushFirst));
        }
        if cap < header.len() {
            // A buffer smaller than a header: nothing can be coalesced, write unbuffered.
            return Ok((total, Plan::Direct(header)));
        }
        // Too big to buffer: fill the buffer, send the rest straight through.
        self.copy_in(&header);
        let n = self.copy_in(payload);
        Ok((total, Plan::Through(n)))
    }

    /// The buffered bytes; call [`clear`](Self::clear) once written.
    pub(crate) fn pending(&mut self) -> &[u8] {
        self.buf.as_mut().get(..self.len).unwrap_or_default()
    }

    pub(crate) fn clear(&mut self) {
        self.len = 0;
    }
}

impl<H, B> Coalesce<H, B> {
    /// `Debug` for the writers: the encoder and how much is buffered.
    pub(crate) fn debug_fields(&self, d: &mut core::fmt::DebugStruct<'_, '_>) {
        d.field("encoder", &self.encoder)
            .field("buffered", &self.len);
    }
}

//! One slot of a listener: its socket, the storage its connection needs, and what a message
//! handler sees of the connection.

use buffstreams_framing::acked::{Delivery, REPLY};
use buffstreams_framing::{Decoder, Encoder, LengthPrefix, Storage};
use smoltcp::iface::SocketHandle;
use smoltcp::socket::tcp;
use smoltcp::time::Instant;
use smoltcp::wire::IpEndpoint;

use super::acked::AckedSlot;
use crate::error::ReplyError;
use crate::stats::ListenerStats;

/// One socket of a [`Listener`](super::Listener) with the room its connection needs.
///
/// `storage` assembles a message that arrives split (its capacity caps the message length);
/// `reply` stages the handler's replies until they move into the socket's send ring (every
/// handler call starts with it empty, so it bounds the replies to one message).
#[derive(Debug)]
pub struct Slot<S, B> {
    pub(super) handle: SocketHandle,
    pub(super) storage: S,
    pub(super) reply: B,
}

impl<S: Storage, B: AsMut<[u8]>> Slot<S, B> {
    /// A slot over the TCP socket `handle` (in the application's `SocketSet`).
    pub const fn new(handle: SocketHandle, storage: S, reply: B) -> Self {
        Self {
            handle,
            storage,
            reply,
        }
    }
}

/// Frames waiting for room in the send ring: a byte stream of whole frames.
#[derive(Debug)]
pub(super) struct Staged<B> {
    pub(super) buf: B,
    pub(super) len: usize,
}

impl<B: AsMut<[u8]>> Staged<B> {
    /// Stages one frame: `kind` (the acknowledged mode's kind byte) then `payload`.
    pub(super) fn push<H: LengthPrefix>(
        &mut self,
        encoder: &Encoder<H>,
        kind: Option<u8>,
        payload: &[u8],
    ) -> Result<usize, ReplyError> {
        let kind = kind.as_slice();
        let body = kind.len() + payload.len();
        let header = encoder.header(body)?;
        let needed = header.len() + body;
        let buf = self.buf.as_mut();
        let free = buf.len().saturating_sub(self.len);
        let Some(room) = buf.get_mut(self.len..self.len + needed) else {
            return Err(ReplyError::Full { needed, free });
        };
        let (h, rest) = room.split_at_mut(header.len());
        h.copy_from_slice(&header);
        let (k, p) = rest.split_at_mut(kind.len());
        k.copy_from_slice(kind);
        p.copy_from_slice(payload);
        self.len += needed;
        Ok(needed)
    }

    /// Bytes free.
    pub(super) fn free(&mut self) -> usize {
        self.buf.as_mut().len().saturating_sub(self.len)
    }

    /// Moves as many staged bytes as fit into the send ring.
    pub(super) fn flush(&mut self, socket: &mut tcp::Socket<'_>) {
        if self.len == 0 || !socket.may_send() {
            return;
        }
        let buf = self.buf.as_mut();
        let n = socket
            .send_slice(buf.get(..self.len).unwrap_or_default())
            .unwrap_or(0);
        buf.copy_within(n..self.len, 0);
        self.len = self.len.saturating_sub(n);
    }
}

#[derive(Debug)]
pub(super) struct Conn<H, S, B> {
    pub(super) handle: SocketHandle,
    pub(super) decoder: Decoder<H, S>,
    pub(super) staged: Staged<B>,
    /// A connection is being served (accepted and not yet ended).
    pub(super) open: bool,
    /// The handler asked to close: read nothing more, send the staged replies, then FIN.
    pub(super) closing: bool,
    /// When the peer last sent a byte (or connected).
    pub(super) last_rx: Instant,
    /// When the message now arriving began (its first byte was read).
    pub(super) frame_since: Option<Instant>,
    /// The acknowledged mode's state of the connection.
    pub(super) acked: AckedSlot,
}

impl<H: LengthPrefix, S: Storage, B: AsMut<[u8]>> Conn<H, S, B> {
    pub(super) fn new(slot: Slot<S, B>, framing: buffstreams_framing::Config) -> Self {
        Self {
            handle: slot.handle,
            decoder: Decoder::new(framing, slot.storage),
            staged: Staged {
                buf: slot.reply,
                len: 0,
            },
            open: false,
            closing: false,
            last_rx: Instant::ZERO,
            frame_since: None,
            acked: AckedSlot::default(),
        }
    }

    /// The connection has ended (its session, in the acknowledged mode, is handed back by
    /// the caller first).
    pub(super) fn end(&mut self) {
        self.decoder.reset();
        self.staged.len = 0;
        self.open = false;
        self.closing = false;
        self.frame_since = None;
    }
}

/// What a message handler gets besides the message: who sent it, and a way to answer.
#[derive(Debug)]
pub struct Connection<'c, H, B> {
    pub(super) id: usize,
    pub(super) remote: Option<IpEndpoint>,
    pub(super) encoder: &'c Encoder<H>,
    pub(super) staged: &'c mut Staged<B>,
    pub(super) closing: &'c mut bool,
    pub(super) stats: &'c mut ListenerStats,
    /// The acknowledged mode: replies carry a kind byte.
    pub(super) kind: Option<u8>,
    pub(super) delivery: Option<Delivery>,
}

impl<H: LengthPrefix, B: AsMut<[u8]>> Connection<'_, H, B> {
    /// The slot's index in the array given to [`Listener::new`](super::Listener::new)
    /// (stable while the connection lasts; use it with [`Listener::push`](super::Listener::push)).
    pub fn id(&self) -> usize {
        self.id
    }

    /// The peer's address and port.
    pub fn peer_addr(&self) -> Option<IpEndpoint> {
        self.remote
    }

    /// In the acknowledged mode ([`Listener::with_acks`](super::Listener::with_acks)), the
    /// message's session, number and whether it may be a repeat (see [`Delivery`]); `None`
    /// otherwise.
    pub fn delivery(&self) -> Option<Delivery> {
        self.delivery
    }

    /// Frames `payload` as a reply on this connection; returns the bytes it takes on the wire.
    ///
    /// The frame is staged in the slot's reply buffer and moves into the socket's send ring
    /// as soon as the handler returns (before any further message of this connection is
    /// handled); it leaves on the next `Interface::poll`. Replies keep their order.
    ///
    /// # Errors
    /// [`ReplyError::Full`] when the reply buffer cannot take the whole frame (nothing
    /// staged), [`ReplyError::Encode`] when it cannot be framed, [`ReplyError::Closing`] after
    /// [`close`](Self::close).
    pub fn reply(&mut self, payload: &[u8]) -> Result<usize, ReplyError> {
        if *self.closing {
            return Err(ReplyError::Closing);
        }
        match self.staged.push(self.encoder, self.kind, payload) {
            Ok(n) => {
                self.stats.messages_out = self.stats.messages_out.saturating_add(1);
                self.stats.bytes_out = self.stats.bytes_out.saturating_add(n as u64);
                Ok(n)
            }
            Err(e) => {
                self.stats.replies_refused = self.stats.replies_refused.saturating_add(1);
                Err(e)
            }
        }
    }

    /// Closes the connection gracefully after this message: no further message from it is
    /// handled, staged replies are sent, then a FIN. The slot listens again once it closes.
    pub fn close(&mut self) {
        *self.closing = true;
    }
}

/// The kind byte replies carry in the acknowledged mode.
pub(super) const fn reply_kind(acked: bool) -> Option<u8> {
    if acked { Some(REPLY) } else { None }
}

//! The BuffStreams listener for a poll loop: a fixed set of sockets on one port, every complete
//! message to a handler that can reply on its connection.

use core::ops::ControlFlow;

use buffstreams_framing::{Decoder, Encoder, Event, LengthPrefix, Storage};
use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::tcp;
use smoltcp::time::Instant;
use smoltcp::wire::IpEndpoint;

use crate::config::ListenerConfig;
use crate::error::{RecvError, ReplyError, SendError};
use crate::socket::{recv_frames, send_frame};
use crate::stats::ListenerStats;

/// One socket of a [`Listener`] with the room its connection needs.
///
/// `storage` assembles a message that arrives split (its capacity caps the message length);
/// `reply` stages the handler's replies until they move into the socket's send ring (every
/// handler call starts with it empty, so it bounds the replies to one message).
#[derive(Debug)]
pub struct Slot<S, B> {
    handle: SocketHandle,
    storage: S,
    reply: B,
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

/// Reply frames waiting for room in the send ring: a byte stream of whole frames.
#[derive(Debug)]
struct Staged<B> {
    buf: B,
    len: usize,
}

impl<B: AsMut<[u8]>> Staged<B> {
    fn push<H: LengthPrefix>(
        &mut self,
        encoder: &Encoder<H>,
        payload: &[u8],
    ) -> Result<usize, ReplyError> {
        let buf = self.buf.as_mut();
        let free_room = buf.get_mut(self.len..).unwrap_or_default();
        // One encode: the header is built once, and a refusal says what it needed.
        match encoder.encode(payload, free_room) {
            Ok(n) => {
                self.len = self.len.saturating_add(n);
                Ok(n)
            }
            Err(buffstreams_framing::EncodeError::BufferTooSmall { needed, available }) => {
                Err(ReplyError::Full {
                    needed,
                    free: available,
                })
            }
            Err(e) => Err(ReplyError::Encode(e)),
        }
    }

    /// Moves as many staged bytes as fit into the send ring.
    fn flush(&mut self, socket: &mut tcp::Socket<'_>) {
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
struct Conn<H, S, B> {
    handle: SocketHandle,
    decoder: Decoder<H, S>,
    staged: Staged<B>,
    /// A connection is being served (accepted and not yet ended).
    open: bool,
    /// The handler asked to close: read nothing more, send the staged replies, then FIN.
    closing: bool,
    /// When the peer last sent a byte (or connected).
    last_rx: Instant,
    /// When the message now arriving began (its first byte was read).
    frame_since: Option<Instant>,
}

impl<H: LengthPrefix, S: Storage, B: AsMut<[u8]>> Conn<H, S, B> {
    fn end(&mut self) {
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
    id: usize,
    remote: Option<IpEndpoint>,
    encoder: &'c Encoder<H>,
    staged: &'c mut Staged<B>,
    closing: &'c mut bool,
    stats: &'c mut ListenerStats,
}

impl<H: LengthPrefix, B: AsMut<[u8]>> Connection<'_, H, B> {
    /// The slot's index in the array given to [`Listener::new`] (stable while the connection
    /// lasts; use it with [`Listener::send`]).
    pub fn id(&self) -> usize {
        self.id
    }

    /// The peer's address and port.
    pub fn remote_endpoint(&self) -> Option<IpEndpoint> {
        self.remote
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
        match self.staged.push(self.encoder, payload) {
            Ok(n) => {
                self.stats.messages_out = self.stats.messages_out.saturating_add(1);
                self.stats.bytes_out = self.stats.bytes_out.saturating_add(n as u64);
                Ok(n)
            }
            Err(e) => {
                self.stats.reply_errors = self.stats.reply_errors.saturating_add(1);
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

/// A BuffStreams listener over a fixed set of smoltcp TCP sockets on one port: every complete
/// message goes to a handler, which can reply on its connection. No threads, no heap, no
/// clock of its own: call [`poll`](Self::poll) after each `Interface::poll`.
///
/// Each slot serves one connection at a time and goes back to listening after its peer leaves,
/// breaks the protocol (that connection alone is aborted) or idles past the timeout. A peer
/// that closes or resets inside a frame never has the partial frame delivered.
///
/// # Examples
/// ```
/// use buffstreams_framing::BigEndian;
/// use buffstreams_transport_smoltcp::{Listener, ListenerConfig, Slot};
/// use smoltcp::iface::SocketSet;
/// use smoltcp::socket::tcp;
/// use smoltcp::time::Instant;
///
/// let mut sockets = SocketSet::new(vec![]);
/// let slots = [(); 2].map(|_| {
///     let socket = tcp::Socket::new(
///         tcp::SocketBuffer::new(vec![0; 4096]),
///         tcp::SocketBuffer::new(vec![0; 4096]),
///     );
///     Slot::new(sockets.add(socket), [0u8; 1024], [0u8; 256])
/// });
/// let mut listener = Listener::<BigEndian<4>, _, _, 2>::new(ListenerConfig::new(5031), slots);
///
/// // In the application's loop, after `iface.poll(now, &mut device, &mut sockets)`:
/// listener.poll(&mut sockets, Instant::from_millis(0), |conn, msg| {
///     let _ = conn.reply(msg); // echo
/// });
/// assert!(sockets.get::<tcp::Socket>(listener.handle(0).unwrap()).is_listening());
/// ```
#[derive(Debug)]
pub struct Listener<H, S, B, const N: usize> {
    config: ListenerConfig,
    encoder: Encoder<H>,
    conns: [Conn<H, S, B>; N],
    stats: ListenerStats,
}

impl<H: LengthPrefix, S: Storage, B: AsMut<[u8]>, const N: usize> Listener<H, S, B, N> {
    /// A listener over `slots`; the sockets start listening on the first [`poll`](Self::poll).
    pub fn new(config: ListenerConfig, slots: [Slot<S, B>; N]) -> Self {
        let framing = config.framing;
        Self {
            config,
            encoder: Encoder::new(framing),
            conns: slots.map(|slot| Conn {
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
            }),
            stats: ListenerStats::default(),
        }
    }

    /// Serves every slot once: puts closed sockets back to listening, moves staged replies into
    /// the send rings, hands every complete message received to `handler`, closes what peers
    /// closed and what idled past the timeout. Call it after each `Interface::poll` with the
    /// same clock; then poll the interface again so replies leave.
    pub fn poll<F>(&mut self, sockets: &mut SocketSet<'_>, now: Instant, mut handler: F)
    where
        F: FnMut(&mut Connection<'_, H, B>, &[u8]),
    {
        for (id, conn) in self.conns.iter_mut().enumerate() {
            let socket = sockets.get_mut::<tcp::Socket>(conn.handle);
            serve(
                id,
                conn,
                socket,
                &self.encoder,
                &mut self.stats,
                &self.config,
                now,
                &mut handler,
            );
        }
    }

    /// Sends a message on slot `id`'s connection outside a handler (a server push). Replies
    /// staged earlier go first, so order is kept.
    ///
    /// # Errors
    /// As [`send_frame`](crate::send_frame); [`SendError::NotConnected`] when the slot has no
    /// connection (or `id` is out of range), [`SendError::Full`] while earlier replies still
    /// wait for room.
    pub fn send(
        &mut self,
        sockets: &mut SocketSet<'_>,
        id: usize,
        payload: &[u8],
    ) -> Result<usize, SendError> {
        let Some(conn) = self.conns.get_mut(id) else {
            return Err(SendError::NotConnected);
        };
        if !conn.open || conn.closing {
            return Err(SendError::NotConnected);
        }
        let socket = sockets.get_mut::<tcp::Socket>(conn.handle);
        conn.staged.flush(socket);
        if conn.staged.len > 0 {
            return Err(SendError::Full {
                needed: self.encoder.encoded_len(payload.len())?,
                free: 0,
            });
        }
        let n = send_frame(socket, &self.encoder, payload)?;
        self.stats.messages_out = self.stats.messages_out.saturating_add(1);
        self.stats.bytes_out = self.stats.bytes_out.saturating_add(n as u64);
        Ok(n)
    }

    /// Whether slot `id` is serving a connection.
    pub fn is_connected(&self, id: usize) -> bool {
        self.conns.get(id).is_some_and(|c| c.open)
    }

    /// The socket handle of slot `id`.
    pub fn handle(&self, id: usize) -> Option<SocketHandle> {
        self.conns.get(id).map(|c| c.handle)
    }

    /// The counters.
    pub fn stats(&self) -> ListenerStats {
        self.stats
    }

    /// The configuration.
    pub fn config(&self) -> &ListenerConfig {
        &self.config
    }

    /// The effective `max_frame_len` (longest message) of slot `id`: the configured one,
    /// capped by what the header can express and by the slot's storage.
    pub fn max_frame_len(&self, id: usize) -> Option<usize> {
        self.conns.get(id).map(|c| c.decoder.max_frame_len())
    }

    /// Aborts every connection (RST). The sockets are closed until the next
    /// [`poll`](Self::poll), which puts them back to listening: stop calling `poll` to stop
    /// serving.
    pub fn close(&mut self, sockets: &mut SocketSet<'_>) {
        for conn in &mut self.conns {
            sockets.get_mut::<tcp::Socket>(conn.handle).abort();
            conn.end();
        }
    }
}

/// One slot's share of [`Listener::poll`]: ingest, dispatch, transmit, lifecycle.
#[allow(clippy::too_many_arguments, reason = "the split borrows of one poll")]
fn serve<H, S, B, F>(
    id: usize,
    conn: &mut Conn<H, S, B>,
    socket: &mut tcp::Socket<'_>,
    encoder: &Encoder<H>,
    stats: &mut ListenerStats,
    config: &ListenerConfig,
    now: Instant,
    handler: &mut F,
) where
    H: LengthPrefix,
    S: Storage,
    B: AsMut<[u8]>,
    F: FnMut(&mut Connection<'_, H, B>, &[u8]),
{
    let port = config.port;
    match socket.state() {
        tcp::State::Closed | tcp::State::TimeWait => {
            if conn.open {
                // Reset by the peer, or our close completed.
                if conn.decoder.is_mid_frame() {
                    stats.truncated = stats.truncated.saturating_add(1);
                    warn!("slot {}: connection ended inside a frame", id);
                }
                conn.end();
            }
            // TimeWait only follows a close we started; the slot is worth more than the wait.
            socket.abort();
            if socket.listen(port).is_err() {
                stats.listen_errors = stats.listen_errors.saturating_add(1);
                warn!("slot {}: cannot listen on port {}", id, port);
            }
            return;
        }
        tcp::State::Listen | tcp::State::SynReceived => return,
        _ => {}
    }
    let remote = socket.remote_endpoint();
    if !conn.open {
        conn.open = true;
        conn.closing = false;
        conn.last_rx = now;
        conn.frame_since = None;
        conn.decoder.reset();
        conn.staged.len = 0;
        stats.connections_total = stats.connections_total.saturating_add(1);
        debug!("slot {}: accepted {:?}", id, remote);
    }
    conn.staged.flush(socket);
    // Whether a message ended in this poll: the one arriving now began in it.
    let mut completed = false;
    // Ingest and dispatch while the previous replies have gone into the send ring: a peer that
    // does not read its replies stops being read (TCP's window then holds it back).
    while !conn.closing && conn.staged.len == 0 && socket.can_recv() {
        let decoder = &mut conn.decoder;
        let staged = &mut conn.staged;
        let closing = &mut conn.closing;
        let received = recv_frames(socket, decoder, |event| {
            completed = true;
            match event {
                Event::Frame(msg) => {
                    stats.messages_in = stats.messages_in.saturating_add(1);
                    stats.bytes_in = stats.bytes_in.saturating_add(msg.len() as u64);
                    let mut c = Connection {
                        id,
                        remote,
                        encoder,
                        staged: &mut *staged,
                        closing: &mut *closing,
                        stats: &mut *stats,
                    };
                    handler(&mut c, msg);
                    if staged.len > 0 || *closing {
                        return ControlFlow::Break(());
                    }
                }
                Event::Skipped(len) => {
                    stats.skipped = stats.skipped.saturating_add(1);
                    warn!("slot {}: skipped an oversize frame of {} bytes", id, len);
                }
                _ => {}
            }
            ControlFlow::Continue(())
        });
        match received {
            Ok(0) => break,
            Ok(_) => conn.last_rx = now,
            Err(RecvError::Decode(e)) => {
                stats.protocol_errors = stats.protocol_errors.saturating_add(1);
                warn!("slot {}: peer {:?} broke the protocol: {}", id, remote, e);
                socket.abort();
                conn.end();
                return;
            }
            Err(_) => break,
        }
        conn.staged.flush(socket);
    }
    conn.staged.flush(socket);
    // The frame deadline runs from a message's first byte to its last, whatever the pace; it
    // restarts with every message, so a peer streaming without pause is never cut.
    if conn.decoder.is_mid_frame() {
        if completed {
            conn.frame_since = Some(now);
        }
        let since = *conn.frame_since.get_or_insert(now);
        if config
            .frame_timeout
            .is_some_and(|limit| now >= since + limit)
        {
            stats.frame_timeouts = stats.frame_timeouts.saturating_add(1);
            warn!(
                "slot {}: peer {:?} did not finish a message in time, aborting",
                id, remote
            );
            socket.abort();
            conn.end();
            return;
        }
    } else {
        conn.frame_since = None;
    }
    if conn.closing && conn.staged.len == 0 {
        socket.close();
    } else if socket.state() == tcp::State::CloseWait && !socket.can_recv() {
        // The peer finished sending and everything it sent is handled.
        if conn.decoder.is_mid_frame() {
            stats.truncated = stats.truncated.saturating_add(1);
            warn!("slot {}: peer {:?} closed inside a frame", id, remote);
            conn.decoder.reset();
        }
        if conn.staged.len == 0 {
            socket.close();
        }
    } else if config
        .idle_timeout
        .is_some_and(|limit| now >= conn.last_rx + limit)
    {
        // Also ends a close that a peer never completes (FIN-WAIT-2 has no timer in smoltcp).
        stats.idle_timeouts = stats.idle_timeouts.saturating_add(1);
        warn!("slot {}: peer {:?} idle, aborting", id, remote);
        socket.abort();
        conn.end();
    }
}

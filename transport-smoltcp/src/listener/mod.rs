//! The BuffStreams listener for a poll loop: a fixed set of sockets on one port, every complete
//! message to a handler that can reply on its connection.

mod acked;
mod serve;
mod slot;

use buffstreams_framing::acked::{SessionSlot, Sessions, back_config};
use buffstreams_framing::{Encoder, LengthPrefix, Storage};
use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::tcp;
use smoltcp::time::Instant;

use crate::config::ListenerConfig;
use crate::error::SendError;
use crate::socket::write_frame;
use crate::stats::ListenerStats;
use serve::{Ctx, Served, serve};
use slot::Conn;

pub use slot::{Connection, Slot};

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
/// listener.poll(&mut sockets, Instant::from_millis(0), |msg, conn| {
///     let _ = conn.reply(msg); // echo
/// });
/// assert!(sockets.get::<tcp::Socket>(listener.handle(0).unwrap()).is_listening());
/// ```
///
/// # The acknowledged mode
/// [`with_acks`](Self::with_acks) gives it a table of writer sessions (storage of yours):
/// each connection must open with an acknowledged writer's hello, its messages are numbered
/// ([`Connection::delivery`]) and acknowledged once the handler returned, so a writer loses
/// nothing across lost connections or a restart of this listener. See
/// [`buffstreams_framing::acked`].
#[derive(Debug)]
pub struct Listener<H, S, B, const N: usize, T = [SessionSlot; 0]> {
    config: ListenerConfig,
    encoder: Encoder<H>,
    back: Encoder<H>,
    conns: [Conn<H, S, B>; N],
    stats: ListenerStats,
    /// The acknowledged mode's writer sessions (`None`: the plain mode).
    sessions: Option<Sessions<T>>,
    next_conn: u64,
    /// The clock of the last poll.
    now: Instant,
}

impl<H: LengthPrefix, S: Storage, B: AsMut<[u8]>, const N: usize> Listener<H, S, B, N> {
    /// A listener over `slots`; the sockets start listening on the first [`poll`](Self::poll).
    pub fn new(config: ListenerConfig, slots: [Slot<S, B>; N]) -> Self {
        let framing = config.framing;
        Self {
            config,
            encoder: Encoder::new(framing),
            back: Encoder::new(back_config::<H>(framing)),
            conns: slots.map(|slot| Conn::new(slot, framing)),
            stats: ListenerStats::default(),
            sessions: None,
            next_conn: 1,
            now: Instant::ZERO,
        }
    }

    /// The acknowledged mode, remembering up to `slots.len()` writer sessions (idle ones are
    /// forgotten after [`ListenerConfig::with_session_ttl`], the one idle longest first when
    /// the table is full). A connection must open with an acknowledged writer's hello (a
    /// plain writer is refused at its first byte: `handshake_errors`); each message is
    /// numbered, [`Connection::delivery`] says whether it may repeat, and it is acknowledged
    /// once the handler has returned. Replies travel beside the acknowledgements (the reply
    /// buffer holds those too: keep it at least 32 bytes).
    ///
    /// Call [`poll`](Self::poll) after every `Interface::poll`: connections are numbered in
    /// the order the listener first sees them, and the session table relies on a writer's
    /// newer connection having the larger number (it refuses a late hello from an older one).
    ///
    /// ```
    /// use buffstreams_framing::BigEndian;
    /// use buffstreams_framing::acked::SessionSlot;
    /// use buffstreams_transport_smoltcp::{Listener, ListenerConfig, Slot};
    /// use smoltcp::iface::SocketSet;
    /// use smoltcp::socket::tcp;
    ///
    /// let mut sockets = SocketSet::new(vec![]);
    /// let slots = [(); 2].map(|_| {
    ///     let socket = tcp::Socket::new(
    ///         tcp::SocketBuffer::new(vec![0; 4096]),
    ///         tcp::SocketBuffer::new(vec![0; 4096]),
    ///     );
    ///     Slot::new(sockets.add(socket), [0u8; 1024], [0u8; 256])
    /// });
    /// let listener = Listener::<BigEndian<4>, _, _, 2>::new(ListenerConfig::new(5031), slots)
    ///     .with_acks([SessionSlot::EMPTY; 8]);
    /// assert!(listener.acks());
    /// ```
    pub fn with_acks<T>(self, slots: T) -> Listener<H, S, B, N, T>
    where
        T: AsRef<[SessionSlot]> + AsMut<[SessionSlot]>,
    {
        let ttl = self.config.session_ttl.total_micros();
        Listener {
            config: self.config,
            encoder: self.encoder,
            back: self.back,
            conns: self.conns,
            stats: self.stats,
            sessions: Some(Sessions::new(slots, ttl)),
            next_conn: self.next_conn,
            now: self.now,
        }
    }
}

impl<H, S, B, const N: usize, T> Listener<H, S, B, N, T>
where
    H: LengthPrefix,
    S: Storage,
    B: AsMut<[u8]>,
    T: AsRef<[SessionSlot]> + AsMut<[SessionSlot]>,
{
    /// Serves every slot once: puts closed sockets back to listening, moves staged replies into
    /// the send rings, hands every complete message received to `handler`, closes what peers
    /// closed and what idled past the timeout. Call it after each `Interface::poll` with the
    /// same clock; then poll the interface again so replies leave.
    ///
    /// The handler takes the message and its connection in the same order as transport-std's
    /// callback, but is `FnMut` and returns nothing: it runs on this one poll loop, never on
    /// two threads at once (std's runs on every connection's thread, so it is `Fn + Sync`),
    /// and there is no thread to log an error on (the handler handles its own).
    pub fn poll<F>(&mut self, sockets: &mut SocketSet<'_>, now: Instant, mut handler: F)
    where
        F: FnMut(&[u8], &mut Connection<'_, H, B>),
    {
        self.now = now;
        let mut ctx = Ctx {
            encoder: &self.encoder,
            back: &self.back,
            stats: &mut self.stats,
            config: &self.config,
            sessions: self.sessions.as_mut(),
            now,
            next_conn: &mut self.next_conn,
        };
        for id in 0..N {
            // Twice at most: a writer's newer connection takes its session from an older one.
            for _ in 0..2 {
                let Some(conn) = self.conns.get_mut(id) else {
                    break;
                };
                let socket = sockets.get_mut::<tcp::Socket>(conn.handle);
                let Served::Held(by) = serve(id, conn, socket, &mut ctx, &mut handler) else {
                    break;
                };
                if let Some(old) = self.conns.iter_mut().find(|c| c.open && c.acked.id == by) {
                    info!(
                        "slot {}: the writer's older connection {} is superseded",
                        id, by
                    );
                    sockets.get_mut::<tcp::Socket>(old.handle).abort();
                    ctx.end(old);
                    ctx.stats.superseded = ctx.stats.superseded.saturating_add(1);
                }
            }
        }
    }

    /// Whether the acknowledged mode is on ([`with_acks`](Listener::with_acks)).
    pub fn acks(&self) -> bool {
        self.sessions.is_some()
    }

    /// Pushes a message on slot `id`'s connection outside a handler (a server push). Replies
    /// staged earlier go first, so order is kept.
    ///
    /// # Errors
    /// As [`write_frame`](crate::write_frame); [`SendError::NotConnected`] when the slot has no
    /// connection (or `id` is out of range), [`SendError::Full`] while earlier replies still
    /// wait for room.
    pub fn push(
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
        let n = if self.sessions.is_some() {
            // The acknowledged mode: a reply frame, with its kind byte.
            let mut staged = 0;
            let pushed = conn
                .staged
                .push(&self.back, slot::reply_kind(true), payload);
            if let Ok(n) = pushed {
                staged = n;
                conn.staged.flush(socket);
            }
            pushed.map_err(|e| match e {
                crate::error::ReplyError::Encode(e) => SendError::Encode(e),
                _ => SendError::Full {
                    needed: staged,
                    free: 0,
                },
            })?
        } else {
            write_frame(socket, &self.encoder, payload)?
        };
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
            if let Some(sessions) = self.sessions.as_mut() {
                conn.acked.close(sessions, self.now);
            }
            conn.end();
        }
    }
}

//! The BuffStreams writer for a poll loop: dials, writes framed messages, reconnects with
//! exponential backoff measured on the application's clock, and reads replies; in the
//! acknowledged mode (`acked.rs`) keeps every message in a window until the listener has it.

mod acked;
mod io;

use buffstreams_framing::acked::{Sender, SenderConfig, SessionId, Window, back_config};
use buffstreams_framing::{Decoder, Encoder, LengthPrefix, Storage};
use smoltcp::iface::{Context, SocketHandle, SocketSet};
use smoltcp::socket::tcp;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::IpEndpoint;

use crate::config::WriterConfig;
use crate::error::RecvError;
use crate::socket::write_room;
use crate::stats::WriterStats;
use acked::{Acked, BackError};

/// Where a [`Writer`] stands, as [`Writer::poll`] reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Status {
    /// Connected: [`Writer::write`] queues messages.
    Connected,
    /// A connection attempt is in flight.
    Connecting,
    /// Waiting until this instant before the next attempt.
    Backoff(Instant),
    /// Gave up after the policy's maximum attempts; [`Writer::reconnect`] starts again.
    GaveUp,
    /// Closed by [`Writer::close`].
    Closed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Backoff(Instant),
    Connecting(Instant),
    Connected,
    Closing,
    GaveUp,
    Closed,
}

/// Ephemeral ports (RFC 6335).
const PORT_FIRST: u16 = 49152;
const PORT_SPAN: u32 = 16384;

/// A BuffStreams writer over one smoltcp TCP socket: connects to `remote`, frames every
/// message, reconnects with exponential backoff on the application's clock, and reads the
/// peer's replies into `storage` when they arrive split. No threads, no heap, no clock of its
/// own: call [`poll`](Self::poll) after each `Interface::poll`.
///
/// A write is all of a frame or none of it: [`SendError::Full`](crate::SendError::Full) means "try again after the
/// next poll", never a partial frame.
///
/// # Examples
/// ```
/// use buffstreams_framing::BigEndian;
/// use buffstreams_transport_smoltcp::{SendError, Writer, WriterConfig};
/// use smoltcp::iface::SocketSet;
/// use smoltcp::socket::tcp;
/// use smoltcp::wire::{IpAddress, IpEndpoint};
///
/// let mut sockets = SocketSet::new(vec![]);
/// let handle = sockets.add(tcp::Socket::new(
///     tcp::SocketBuffer::new(vec![0; 4096]),
///     tcp::SocketBuffer::new(vec![0; 4096]),
/// ));
/// let server = IpEndpoint::new(IpAddress::v4(192, 168, 69, 100), 5031);
/// let mut writer = Writer::<BigEndian<4>, _>::new(handle, server, WriterConfig::new(), [0u8; 512]);
/// // Not connected until `poll` has dialled and the handshake is done:
/// assert_eq!(writer.write(&mut sockets, b"hello"), Err(SendError::NotConnected));
/// ```
///
/// # The acknowledged mode
/// [`with_acks`](Self::with_acks) gives the writer a window (a buffer of yours) that keeps
/// every message until the listener (a transport-std or transport-smoltcp listener with acks)
/// has handed it to its application: a lost connection or a restarted server loses nothing,
/// and what may arrive twice is marked on the listener's side. See
/// [`buffstreams_framing::acked`].
#[derive(Debug)]
pub struct Writer<H, S, W = [u8; 0]> {
    handle: SocketHandle,
    remote: IpEndpoint,
    config: WriterConfig,
    encoder: Encoder<H>,
    decoder: Decoder<H, S>,
    state: State,
    failures: u32,
    rng: u32,
    port: u16,
    /// The application reads replies ([`Writer::receive`] was called on this connection): a
    /// lost connection's last replies are handed over before it is given up.
    reads: bool,
    /// A connection was established before (the next one is a reconnect).
    connected_before: bool,
    stats: WriterStats,
    acked: Option<Acked<H, W>>,
}

impl<H: LengthPrefix, S: Storage> Writer<H, S> {
    /// A writer that dials `remote` from the TCP socket `handle` on the first
    /// [`poll`](Self::poll). `storage` assembles replies that arrive split (its capacity caps
    /// their length; `[u8; 0]` when the peer never replies).
    pub fn new(handle: SocketHandle, remote: IpEndpoint, config: WriterConfig, storage: S) -> Self {
        let rng = if config.seed == 0 { 1 } else { config.seed };
        let mut writer = Self {
            handle,
            remote,
            config,
            encoder: Encoder::new(config.framing),
            decoder: Decoder::new(config.framing, storage),
            state: State::Backoff(Instant::ZERO),
            failures: 0,
            rng,
            port: PORT_FIRST,
            reads: false,
            connected_before: false,
            stats: WriterStats::default(),
            acked: None,
        };
        let offset = writer.random() % PORT_SPAN;
        writer.port = PORT_FIRST.saturating_add(offset as u16);
        writer
    }

    /// The acknowledged mode: every message is kept in `window` (your buffer: its size bounds
    /// the bytes in flight, 8 bytes per message on top of its frame) until the listener
    /// acknowledges it, and sent again after a lost connection; [`write`](Self::write) queues
    /// into the window whether connected or not, and refuses with
    /// [`SendError::WindowFull`](crate::SendError::WindowFull) when it is full. `session` must be new every time the
    /// device starts (16 bytes from a hardware RNG): a listener that remembers an old
    /// session with the same id would take the new messages for ones it has delivered.
    ///
    /// A reboot loses the window: an application that must not lose what it queued before a
    /// reboot keeps it (and the session) in persistent storage itself.
    ///
    /// The writer turns Nagle's algorithm off on its socket when it connects: it waits for
    /// the listener between windows, and a last short segment held back for the listener's
    /// delayed TCP ACK would stall it once per window.
    ///
    /// ```
    /// use buffstreams_framing::BigEndian;
    /// use buffstreams_framing::acked::{SessionId, Window};
    /// use buffstreams_transport_smoltcp::{Writer, WriterConfig};
    /// use smoltcp::iface::SocketSet;
    /// use smoltcp::socket::tcp;
    /// use smoltcp::wire::{IpAddress, IpEndpoint};
    ///
    /// let mut sockets = SocketSet::new(vec![]);
    /// let handle = sockets.add(tcp::Socket::new(
    ///     tcp::SocketBuffer::new(vec![0; 4096]),
    ///     tcp::SocketBuffer::new(vec![0; 4096]),
    /// ));
    /// let server = IpEndpoint::new(IpAddress::v4(192, 168, 69, 100), 5031);
    /// let session = SessionId([0x5a; 16]); // from the device's RNG, new at every boot
    /// let mut writer = Writer::<BigEndian<4>, _>::new(handle, server, WriterConfig::new(), [0u8; 512])
    ///     .with_acks(Window::new([0u8; 8192], usize::MAX, 256), session);
    /// // Queued in the window even before the connection is up:
    /// assert!(writer.write(&mut sockets, b"reading 1").is_ok());
    /// assert_eq!(writer.unacknowledged(), 1);
    /// ```
    pub fn with_acks<W: Storage>(self, window: Window<W>, session: SessionId) -> Writer<H, S, W> {
        let timeouts = SenderConfig::new()
            .with_welcome_timeout_us(self.config.connect_timeout.total_micros())
            .with_silence_timeout_us(self.config.ack_timeout.total_micros());
        let framing = self.config.framing;
        let storage = self.decoder.into_storage();
        Writer {
            handle: self.handle,
            remote: self.remote,
            config: self.config,
            encoder: self.encoder,
            // Welcomes, acknowledgements and replies: one byte more than a message.
            decoder: Decoder::new(back_config::<H>(framing), storage),
            state: self.state,
            failures: self.failures,
            rng: self.rng,
            port: self.port,
            reads: self.reads,
            connected_before: self.connected_before,
            stats: self.stats,
            acked: Some(Acked::new(Sender::new(framing, timeouts, window, session))),
        }
    }
}

impl<H: LengthPrefix, S: Storage, W: Storage> Writer<H, S, W> {
    /// Drives the connection: dials when it is time, notices an established, refused, lost or
    /// timed-out connection, and schedules the next attempt. `cx` is `iface.context()`.
    pub fn poll(&mut self, cx: &mut Context, sockets: &mut SocketSet<'_>, now: Instant) -> Status {
        let socket = sockets.get_mut::<tcp::Socket>(self.handle);
        if let Some(a) = self.acked.as_mut() {
            a.now_us = u64::try_from(now.total_micros()).unwrap_or(0);
        }
        match self.state {
            State::Backoff(at) if now >= at => self.dial(cx, socket, now),
            State::Backoff(_) | State::GaveUp | State::Closed => {}
            State::Connecting(since) => match socket.state() {
                tcp::State::Established => {
                    self.state = State::Connected;
                    // In the acknowledged mode an attempt succeeds with its welcome.
                    if self.acked.is_none() {
                        self.failures = 0;
                    }
                    self.reads = false;
                    self.decoder.reset();
                    if self.connected_before {
                        self.stats.reconnects = self.stats.reconnects.saturating_add(1);
                    }
                    self.connected_before = true;
                    info!("connected to {}", self.remote);
                    if let Some(a) = self.acked.as_mut() {
                        a.connected(socket);
                    }
                }
                tcp::State::SynSent | tcp::State::SynReceived
                    if now < since + self.config.connect_timeout => {}
                _ => {
                    // Refused (RST), or no answer in time.
                    socket.abort();
                    self.failed(now);
                }
            },
            State::Connected => match socket.state() {
                tcp::State::Established => self.acked_poll(sockets),
                // Replies that arrived before the peer closed or reset go to `receive` first
                // (redialling resets the socket and its rings).
                _ if self.reads && socket.can_recv() => {}
                tcp::State::CloseWait => {
                    // The peer is going away; let what it may still read go, then redial.
                    socket.close();
                    self.lost(socket, now, false);
                }
                _ => self.lost(socket, now, true),
            },
            State::Closing => {
                if !socket.is_open() {
                    self.state = State::Closed;
                }
            }
        }
        self.status()
    }

    /// The acknowledged mode's share of a poll on an established connection: what the
    /// listener sent back (unless the application reads it with `receive`), a connection that
    /// has gone silent, and what the window has to send.
    fn acked_poll(&mut self, sockets: &mut SocketSet<'_>) {
        let Some(a) = self.acked.as_mut() else {
            return;
        };
        let socket = sockets.get_mut::<tcp::Socket>(self.handle);
        let read = if self.reads {
            Ok(0)
        } else {
            // The application does not read replies: they are counted and dropped.
            a.read_back(socket, &mut self.decoder, &mut self.stats, |_| {})
        };
        let broken = match read {
            Err(BackError::Protocol(e)) => {
                warn!("{} broke the acknowledged protocol: {}", self.remote, e);
                true
            }
            Err(BackError::Recv(RecvError::Decode(e))) => {
                warn!(
                    "reply stream from {} broke the protocol: {}",
                    self.remote, e
                );
                true
            }
            Err(BackError::Recv(_)) | Ok(_) => a.broken().is_some_and(|b| {
                warn!("connection to {} broken: {:?}", self.remote, b);
                true
            }),
        };
        if broken {
            self.stats.protocol_errors = self.stats.protocol_errors.saturating_add(1);
            // The next poll sees it closed and redials.
            socket.abort();
            return;
        }
        if a.is_open() {
            self.failures = 0;
        }
        a.pump(socket);
    }

    fn dial(&mut self, cx: &mut Context, socket: &mut tcp::Socket<'_>, now: Instant) {
        if socket.is_open() || socket.state() == tcp::State::TimeWait {
            socket.abort();
        }
        // A new local port per attempt: the peer may still hold the old connection.
        self.port = PORT_FIRST.saturating_add(
            ((u32::from(self.port.wrapping_sub(PORT_FIRST)) + 1) % PORT_SPAN) as u16,
        );
        self.stats.connect_attempts = self.stats.connect_attempts.saturating_add(1);
        match socket.connect(cx, self.remote, self.port) {
            Ok(()) => {
                debug!("dialling {} from port {}", self.remote, self.port);
                self.state = State::Connecting(now);
            }
            Err(e) => {
                warn!("cannot dial {}: {:?}", self.remote, e);
                self.failed(now);
            }
        }
    }

    fn failed(&mut self, now: Instant) {
        self.stats.connect_failures = self.stats.connect_failures.saturating_add(1);
        self.failures = self.failures.saturating_add(1);
        if self
            .config
            .retry
            .max_attempts
            .is_some_and(|max| self.failures >= max)
        {
            warn!(
                "giving up on {} after {} attempts",
                self.remote, self.failures
            );
            self.state = State::GaveUp;
            return;
        }
        let delay = self.config.retry.delay(self.failures);
        self.state = State::Backoff(now + self.jitter(delay));
    }

    /// The connection is gone: count what may not have arrived, redial after a short backoff.
    fn lost(&mut self, socket: &mut tcp::Socket<'_>, now: Instant, reset: bool) {
        self.stats.disconnects = self.stats.disconnects.saturating_add(1);
        self.stats.in_doubt_bytes = self
            .stats
            .in_doubt_bytes
            .saturating_add(socket.send_queue() as u64);
        warn!(
            "connection to {} lost ({}), {} bytes in doubt",
            self.remote,
            if reset { "reset" } else { "closed by peer" },
            socket.send_queue()
        );
        if reset {
            socket.abort();
        }
        // In the acknowledged mode a connection that ended before its welcome was refused:
        // an attempt that failed (it counts against the retry policy).
        let welcomed = self.acked.as_ref().is_none_or(Acked::is_open);
        if let Some(a) = self.acked.as_mut() {
            a.lost();
        }
        if !welcomed {
            return self.failed(now);
        }
        self.failures = 0;
        let delay = self.config.retry.delay(1);
        self.state = State::Backoff(now + self.jitter(delay));
    }

    /// Half to all of `delay` ("equal jitter").
    fn jitter(&mut self, delay: Duration) -> Duration {
        let micros = delay.total_micros();
        let half = micros / 2;
        let spread = half.saturating_add(1);
        Duration::from_micros(half.saturating_add(u64::from(self.random()) % spread))
    }

    /// xorshift32: jitter and ports need spread, not secrecy.
    fn random(&mut self) -> u32 {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.rng = x;
        x
    }

    /// Where the writer stands.
    pub fn status(&self) -> Status {
        match self.state {
            // In the acknowledged mode, once the listener has welcomed the connection.
            State::Connected if self.acked.as_ref().is_some_and(|a| !a.is_open()) => {
                Status::Connecting
            }
            State::Connected => Status::Connected,
            State::Connecting(_) => Status::Connecting,
            State::Backoff(at) => Status::Backoff(at),
            State::GaveUp => Status::GaveUp,
            State::Closing | State::Closed => Status::Closed,
        }
    }

    /// Whether the connection is up (in the acknowledged mode: welcomed by the listener).
    pub fn is_connected(&self) -> bool {
        self.status() == Status::Connected
    }

    /// Whether a message of `payload_len` bytes would be queued by [`write`](Self::write) now.
    pub fn can_write(&self, sockets: &SocketSet<'_>, payload_len: usize) -> bool {
        if let Some(a) = &self.acked {
            return self
                .encoder
                .encoded_len(payload_len)
                .is_ok_and(|n| a.sender.has_room(n, 1));
        }
        if self.state != State::Connected {
            return false;
        }
        let socket = sockets.get::<tcp::Socket>(self.handle);
        socket.may_send()
            && self
                .encoder
                .encoded_len(payload_len)
                .is_ok_and(|n| n <= write_room(socket))
    }

    /// Bytes queued in the send ring and not yet acknowledged by the peer.
    pub fn pending(&self, sockets: &SocketSet<'_>) -> usize {
        sockets.get::<tcp::Socket>(self.handle).send_queue()
    }

    /// Starts dialling again at the next [`poll`](Self::poll) after [`Status::GaveUp`] or
    /// [`close`](Self::close).
    pub fn reconnect(&mut self) {
        if matches!(self.state, State::GaveUp | State::Closed) {
            self.failures = 0;
            self.state = State::Backoff(Instant::ZERO);
        }
    }

    /// Closes gracefully: the queued messages are sent, then a FIN; no redial.
    pub fn close(&mut self, sockets: &mut SocketSet<'_>) {
        sockets.get_mut::<tcp::Socket>(self.handle).close();
        self.state = State::Closing;
    }

    /// The counters.
    pub fn stats(&self) -> WriterStats {
        self.stats
    }

    /// The socket handle.
    pub fn handle(&self) -> SocketHandle {
        self.handle
    }

    /// The peer it dials.
    pub fn peer_addr(&self) -> IpEndpoint {
        self.remote
    }

    /// The configuration.
    pub fn config(&self) -> &WriterConfig {
        &self.config
    }
}

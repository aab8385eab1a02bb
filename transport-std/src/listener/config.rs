//! Listener settings.

use std::time::Duration;

use buffstreams_framing::{Config, Oversize};

use crate::clamp::{at_least, nonzero};

/// What the listener does with a new connection when `max_connections` are open.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum OverLimit {
    /// Make room (the default): close the open connection that has gone longest without
    /// completing a message, and serve the newcomer. Connections that never completed one
    /// go first (their time counts from the accept); a connection whose thread is handling
    /// messages (a callback may be running) is never chosen, nor one accepted less than
    /// [`with_eviction_grace`](ListenerConfig::with_eviction_grace) ago. When none
    /// qualifies, the newcomer is refused. Counted in `evictions` (and `connections_refused`).
    #[default]
    Evict,
    /// Accept the newcomer and close it at once (counted in `connections_refused`).
    Refuse,
    /// Stop accepting until a connection closes; new peers wait in the kernel's backlog.
    Wait,
}

/// Listener settings. `ListenerConfig::default()` is: max message 4096 bytes, oversize
/// frames rejected, idle timeout 120 s, frame deadline 10 s, reply write timeout 30 s, 1024
/// connections (beyond them the connection idle longest is evicted, none younger than 1 s),
/// no cap per peer address, TCP_NODELAY on, 64 KiB read buffer per connection, busy polling
/// for 20 µs while a peer streams.
///
/// Every method is `const`, so a configuration can be a constant:
/// ```
/// use std::time::Duration;
/// use buffstreams_transport_std::ListenerConfig;
///
/// const CONFIG: ListenerConfig = ListenerConfig::new()
///     .with_max_frame_len(1 << 20)
///     .with_idle_timeout(Some(Duration::ZERO)) // zero: never
///     .with_max_connections(0); // raised to 1
/// assert_eq!(CONFIG.framing().max_frame_len(), 1 << 20);
/// assert_eq!((CONFIG.idle_timeout(), CONFIG.max_connections()), (None, 1));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenerConfig {
    framing: Config,
    idle_timeout: Option<Duration>,
    frame_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
    max_connections: usize,
    over_limit: OverLimit,
    eviction_grace: Duration,
    max_per_ip: Option<usize>,
    nodelay: bool,
    thread_stack: Option<usize>,
    read_buffer: usize,
    busy_poll: Duration,
    acks: bool,
    max_sessions: usize,
    session_ttl: Duration,
    ack_delay: Duration,
    ack_every: (u64, u64),
    #[cfg(feature = "tls")]
    tls: Option<crate::tls::ServerTls>,
}

impl Default for ListenerConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl ListenerConfig {
    /// The defaults (every setter and getter is `const`, so a configuration can be a
    /// `const`).
    pub const fn new() -> Self {
        Self {
            framing: Config::new(),
            idle_timeout: Some(Duration::from_secs(120)),
            frame_timeout: Some(Duration::from_secs(10)),
            write_timeout: Some(Duration::from_secs(30)),
            max_connections: 1024,
            over_limit: OverLimit::Evict,
            eviction_grace: Duration::from_secs(1),
            max_per_ip: None,
            nodelay: true,
            thread_stack: None,
            read_buffer: 64 * 1024,
            busy_poll: Duration::from_micros(20),
            acks: false,
            max_sessions: 4096,
            session_ttl: Duration::from_secs(600),
            ack_delay: Duration::from_micros(500),
            ack_every: (
                buffstreams_framing::acked::ACK_EVERY,
                buffstreams_framing::acked::ACK_BYTES,
            ),
            #[cfg(feature = "tls")]
            tls: None,
        }
    }

    /// Longest message accepted (default 4096 bytes; the framing crate's `max_frame_len`). A
    /// header declaring more is handled by the oversize policy before any byte of it is
    /// buffered.
    pub const fn with_max_frame_len(mut self, max: usize) -> Self {
        self.framing = self.framing.with_max_frame_len(max);
        self
    }
    /// `Reject` (default) closes a connection that declares an oversize message; `Skip`
    /// discards that message's bytes and goes on with the next one.
    pub const fn with_oversize(mut self, policy: Oversize) -> Self {
        self.framing = self.framing.with_oversize(policy);
        self
    }
    /// The whole framing configuration at once.
    pub const fn with_framing(mut self, framing: Config) -> Self {
        self.framing = framing;
        self
    }
    /// Close a connection that sends nothing for this long (`None` or zero: never).
    pub const fn with_idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.idle_timeout = nonzero(timeout);
        self
    }
    /// Close a connection that does not complete a frame within this long of its first byte
    /// (default 10 s; `None` or zero: never). The deadline restarts with every message that
    /// completes, so a peer streaming large messages is not cut; a peer that stalls inside a
    /// header or a body, or trickles one in, is closed (counted in `frame_timeouts`).
    /// Separate from the idle timeout, which applies between frames.
    pub const fn with_frame_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.frame_timeout = nonzero(timeout);
        self
    }
    /// Give up on a peer that does not read its replies for this long (`None` or zero:
    /// never). Also bounds how long a graceful shutdown can wait for a connection blocked in
    /// a reply.
    pub const fn with_write_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.write_timeout = nonzero(timeout);
        self
    }
    /// Connections served at once (at least 1).
    pub const fn with_max_connections(mut self, max: usize) -> Self {
        self.max_connections = at_least(max, 1);
        self
    }
    /// What happens beyond `max_connections`.
    pub const fn with_over_limit(mut self, policy: OverLimit) -> Self {
        self.over_limit = policy;
        self
    }
    /// Under [`OverLimit::Evict`], connections accepted less than this long ago are never
    /// evicted (default 1 s), so a new client gets time to send its first message.
    pub const fn with_eviction_grace(mut self, grace: Duration) -> Self {
        self.eviction_grace = grace;
        self
    }
    /// At most this many connections from one peer IP address (`None`, the default: no cap);
    /// more are closed at accept (counted in `per_ip_refused`). Peers behind one NAT share an
    /// address: size it for them.
    pub const fn with_max_connections_per_ip(mut self, max: Option<usize>) -> Self {
        self.max_per_ip = match max {
            Some(n) => Some(at_least(n, 1)),
            None => None,
        };
        self
    }
    /// TCP_NODELAY on accepted connections (default on), so replies go out at once.
    pub const fn with_nodelay(mut self, on: bool) -> Self {
        self.nodelay = on;
        self
    }
    /// Stack size of the listener's threads, the accept thread and one per connection, where
    /// callbacks run (`None`, the default: the standard library's, 2 MiB unless
    /// `RUST_MIN_STACK` says otherwise). Stacks are reserved, not used: an idle connection
    /// costs the pages its thread touched, not the whole stack.
    pub const fn with_thread_stack(mut self, bytes: Option<usize>) -> Self {
        self.thread_stack = bytes;
        self
    }
    /// Read buffer per connection (default 64 KiB; at least 64 bytes).
    pub const fn with_read_buffer(mut self, bytes: usize) -> Self {
        self.read_buffer = at_least(bytes, 64);
        self
    }
    /// How long a connection thread polls its socket without sleeping before it blocks in
    /// a read, while the peer streams (the last read filled at least half the read
    /// buffer); default 20 µs, `Duration::ZERO` turns it off. Linux only (elsewhere the
    /// thread always sleeps in the read).
    ///
    /// A sleeping reader must be woken by the sender's kernel for every chunk it writes;
    /// that wake-up (an interrupt to the reader's CPU) costs the sending side more than the
    /// copy of the bytes. Measured on the bench (110-byte messages over loopback, 2-core
    /// VM), polling took one `Writer` connection from about 60 to 75 M msgs/s. The cost is
    /// CPU: up to this long per pause in a stream, with at most one polling thread per CPU
    /// but one (none on a single CPU). Lone messages and request/response traffic never
    /// fill half the buffer, so they never poll.
    pub const fn with_busy_poll(mut self, budget: Duration) -> Self {
        self.busy_poll = budget;
        self
    }

    /// The acknowledged mode (default off): every connection must open with an
    /// acknowledged-mode hello (a writer with [`WriterConfig::with_acks`](crate::WriterConfig::with_acks));
    /// messages are numbered per writer session, a message the callback already saw is
    /// dropped when a writer re-sends it, and the listener acknowledges what its callback has
    /// returned from. A plain peer's connection is refused (counted in `handshake_errors`).
    /// See the crate docs for the guarantees and [`Connection::delivery`](crate::Connection::delivery).
    pub const fn with_acks(mut self, on: bool) -> Self {
        self.acks = on;
        self
    }

    /// TLS (feature `tls`): every connection must complete a TLS handshake with `config`
    /// (rustls's) before any message is read. For mutual TLS build `config` with a client
    /// certificate verifier (rustls's `WebPkiClientVerifier`); the callback sees the verified
    /// chain through [`Connection::peer_certificates`](crate::Connection::peer_certificates).
    ///
    /// The handshake counts as a frame in progress: it must finish within the frame timeout,
    /// and a connection still in it is evicted like an idle one at `max_connections`. A
    /// connection that fails it (a plaintext peer, a refused certificate, no common version)
    /// is closed, logged with its reason and counted in
    /// [`ListenerStats::tls_errors`](crate::ListenerStats::tls_errors).
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn with_tls(mut self, config: std::sync::Arc<rustls::ServerConfig>) -> Self {
        self.tls = Some(crate::tls::ServerTls(config));
        self
    }

    /// Whether connections use TLS ([`with_tls`](Self::with_tls)).
    pub const fn is_tls(&self) -> bool {
        #[cfg(feature = "tls")]
        return self.tls.is_some();
        #[cfg(not(feature = "tls"))]
        false
    }

    #[cfg(feature = "tls")]
    pub(crate) fn tls(&self) -> Option<&crate::tls::ServerTls> {
        self.tls.as_ref()
    }
    /// Writer sessions remembered at once in the acknowledged mode (default 4096): beyond
    /// them the one idle longest is forgotten (a re-sent message of a forgotten session is
    /// delivered again, marked `may_repeat`).
    pub const fn with_max_sessions(mut self, max: usize) -> Self {
        self.max_sessions = at_least(max, 1);
        self
    }
    /// Acknowledged mode: how long an acknowledgement waits for more messages to cover
    /// (default 500 µs; while a writer streams one goes out anyway at the bounds of
    /// [`with_ack_every`](Self::with_ack_every)). Each one wakes the writer's reply thread, so
    /// they are coalesced; a writer whose window
    /// ([`WriterConfig::with_ack_window`](crate::WriterConfig::with_ack_window)) holds less
    /// than those bounds waits up to this long for room once per window, so keep the window
    /// above them (the default window, 8 MiB and 1 Mi messages, is), or lower them, or
    /// shorten this.
    pub const fn with_ack_delay(mut self, delay: Duration) -> Self {
        self.ack_delay = delay;
        self
    }

    /// Acknowledged mode: while a writer streams, acknowledge at least every `messages`
    /// messages or `bytes` bytes of them, whichever comes first (default 16,384 and 2 MiB).
    /// Fewer acknowledgements cost the writer less (each wakes its reply thread, whose read
    /// contends with its writes for the socket); a writer's window must hold more than both
    /// for it never to wait for the acknowledgement delay.
    pub const fn with_ack_every(mut self, messages: u64, bytes: u64) -> Self {
        // Zero would acknowledge every message; one is the least that means anything.
        self.ack_every = (
            if messages == 0 { 1 } else { messages },
            if bytes == 0 { 1 } else { bytes },
        );
        self
    }

    /// How long an idle session is remembered (default 10 minutes).
    pub const fn with_session_ttl(mut self, ttl: Duration) -> Self {
        self.session_ttl = ttl;
        self
    }

    /// Whether the acknowledged mode is on.
    pub const fn acks(&self) -> bool {
        self.acks
    }
    /// Sessions remembered at once.
    pub const fn max_sessions(&self) -> usize {
        self.max_sessions
    }
    /// How long an idle session is remembered.
    pub const fn session_ttl(&self) -> Duration {
        self.session_ttl
    }

    /// How long an acknowledgement waits for more messages to cover.
    pub const fn ack_delay(&self) -> Duration {
        self.ack_delay
    }

    /// The acknowledgement bounds: at least every this many messages, and bytes of them.
    pub const fn ack_every(&self) -> (u64, u64) {
        self.ack_every
    }

    /// The framing configuration in force (its `max_frame_len` is the longest message).
    pub const fn framing(&self) -> Config {
        self.framing
    }
    /// The idle timeout (`None`: never).
    pub const fn idle_timeout(&self) -> Option<Duration> {
        self.idle_timeout
    }
    /// The frame deadline (`None`: never).
    pub const fn frame_timeout(&self) -> Option<Duration> {
        self.frame_timeout
    }
    /// The reply write timeout (`None`: never).
    pub const fn write_timeout(&self) -> Option<Duration> {
        self.write_timeout
    }
    /// Connections served at once.
    pub const fn max_connections(&self) -> usize {
        self.max_connections
    }
    /// What happens beyond `max_connections`.
    pub const fn over_limit(&self) -> OverLimit {
        self.over_limit
    }
    /// How young a connection is safe from eviction.
    pub const fn eviction_grace(&self) -> Duration {
        self.eviction_grace
    }
    /// The cap per peer IP address (`None`: none).
    pub const fn max_connections_per_ip(&self) -> Option<usize> {
        self.max_per_ip
    }
    /// Whether accepted connections get TCP_NODELAY.
    pub const fn nodelay(&self) -> bool {
        self.nodelay
    }
    /// Stack size of the listener's threads (`None`: the standard library's).
    pub const fn thread_stack(&self) -> Option<usize> {
        self.thread_stack
    }
    /// Read buffer per connection, in bytes.
    pub const fn read_buffer(&self) -> usize {
        self.read_buffer
    }
    /// The busy-polling budget (zero: off).
    pub const fn busy_poll(&self) -> Duration {
        self.busy_poll
    }

    /// A builder for one of the listener's threads.
    pub(super) fn thread_builder(&self, name: String) -> std::thread::Builder {
        let builder = std::thread::Builder::new().name(name);
        match self.thread_stack {
            Some(bytes) => builder.stack_size(bytes),
            None => builder,
        }
    }
}

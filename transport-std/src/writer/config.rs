//! Writer settings.

use std::sync::Arc;
use std::time::Duration;

use buffstreams_framing::Config;

use super::RetryPolicy;
use crate::clamp::{at_least, nonzero};

/// Called with the payload of every message that could not be delivered.
pub type DeadLetterFn = dyn Fn(&[u8]) + Send + Sync;

/// Called with every message the listener sends back on the writer's connection.
pub type ReplyFn = dyn Fn(&[u8]) + Send + Sync;

/// What `write` does in the acknowledged mode when the window of unacknowledged messages is
/// full ([`WriterConfig::with_ack_window`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum WindowFull {
    /// Wait for acknowledgements (the default): the writing thread blocks, memory stays
    /// bounded. A connection that acknowledges nothing for the write timeout is taken for
    /// broken: the writer reconnects and re-sends.
    #[default]
    Block,
    /// Return [`Error::WindowFull`](crate::Error::WindowFull) from `write`, nothing queued.
    Error,
}

/// Writer settings. Defaults: max message 4096 bytes, TCP_NODELAY on, [`RetryPolicy::default`],
/// 3 s connect timeout, 30 s write timeout, 4 MiB of buffers (64 KiB per writing thread),
/// 5 ms linger, dead letters kept in a queue, nothing read back from the listener.
///
/// Every method but the callbacks' (which hold an `Arc`) is `const`:
/// ```
/// use std::time::Duration;
/// use buffstreams_transport_std::{RetryPolicy, WriterConfig};
///
/// const RETRY: RetryPolicy = RetryPolicy::new().with_max_attempts(None); // the deadline only
/// const CONFIG: WriterConfig = WriterConfig::new()
///     .with_retry(RETRY)
///     .with_connect_timeout(Duration::from_millis(500));
/// let config = CONFIG.with_on_reply(|reply| println!("{} bytes back", reply.len()));
/// assert_eq!(config.retry().max_attempts(), None);
/// assert_eq!(config.connect_timeout(), Duration::from_millis(500));
/// ```
#[derive(Clone)]
pub struct WriterConfig {
    framing: Config,
    nodelay: bool,
    retry: RetryPolicy,
    connect_timeout: Duration,
    write_timeout: Option<Duration>,
    max_buffer: usize,
    linger: Duration,
    dead_letter: Option<Arc<DeadLetterFn>>,
    on_reply: Option<Arc<ReplyFn>>,
    reply_wait: Duration,
    acks: bool,
    window_bytes: usize,
    window_messages: u64,
    window_full: WindowFull,
    #[cfg(feature = "tls")]
    tls: Option<crate::tls::ClientTls>,
}

impl Default for WriterConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl WriterConfig {
    /// The defaults. Every setter and getter but the callbacks' is `const`.
    pub const fn new() -> Self {
        Self {
            framing: Config::new(),
            nodelay: true,
            retry: RetryPolicy::new(),
            connect_timeout: Duration::from_secs(3),
            write_timeout: Some(Duration::from_secs(30)),
            max_buffer: 4 << 20,
            linger: Duration::from_millis(5),
            dead_letter: None,
            on_reply: None,
            reply_wait: Duration::from_secs(5),
            acks: false,
            window_bytes: 8 << 20,
            window_messages: 1 << 20,
            window_full: WindowFull::Block,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }
}

impl std::fmt::Debug for WriterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut f = f.debug_struct("WriterConfig");
        f.field("framing", &self.framing)
            .field("nodelay", &self.nodelay)
            .field("retry", &self.retry)
            .field("connect_timeout", &self.connect_timeout)
            .field("write_timeout", &self.write_timeout)
            .field("max_buffer", &self.max_buffer)
            .field("linger", &self.linger)
            .field(
                "dead_letter",
                &self.dead_letter.as_ref().map(|_| "callback"),
            )
            .field("on_reply", &self.on_reply.as_ref().map(|_| "callback"))
            .field("reply_wait", &self.reply_wait)
            .field("acks", &self.acks)
            .field("window_bytes", &self.window_bytes)
            .field("window_messages", &self.window_messages)
            .field("window_full", &self.window_full);
        #[cfg(feature = "tls")]
        f.field("tls", &self.tls);
        f.finish()
    }
}

impl WriterConfig {
    /// Longest message `write` accepts (default 4096 bytes; the framing crate's
    /// `max_frame_len`); longer ones are an [`Error::Encode`](crate::Error::Encode).
    pub const fn with_max_frame_len(mut self, max: usize) -> Self {
        self.framing = self.framing.with_max_frame_len(max);
        self
    }
    /// The whole framing configuration at once.
    pub const fn with_framing(mut self, framing: Config) -> Self {
        self.framing = framing;
        self
    }
    /// TCP_NODELAY (default on: the writer batches by itself).
    pub const fn with_nodelay(mut self, on: bool) -> Self {
        self.nodelay = on;
        self
    }
    /// The reconnect policy.
    pub const fn with_retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }
    /// Timeout of each connection attempt (at least 1 ms).
    pub const fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = if timeout.as_nanos() < 1_000_000 {
            Duration::from_millis(1)
        } else {
            timeout
        };
        self
    }
    /// A socket write that makes no progress for this long counts as a broken connection
    /// (default 30 s; `None` or zero: wait for a peer that stopped reading forever).
    pub const fn with_write_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.write_timeout = nonzero(timeout);
        self
    }
    /// Memory for buffered messages (default 4 MiB): `bytes / 64 KiB` buffers of 64 KiB (at
    /// least two, smaller then). Threads writing through the writer get one of their own
    /// while they last; the last one is shared by the remaining threads, under a lock. A
    /// thread whose buffer is full sends it before queueing more: that is the backpressure.
    pub const fn with_max_buffer(mut self, bytes: usize) -> Self {
        self.max_buffer = at_least(bytes, 1);
        self
    }
    /// The longest a streaming thread's last messages wait once it stops (default 5 ms). The
    /// flusher first looks 100 µs after it saw the thread streaming (the tail of a short
    /// burst goes out then), and backs off to `linger` while the thread keeps streaming: each
    /// look is a timed wake-up that costs the writing thread throughput. A message written
    /// after a pause is sent at once whatever this is, full 64 KiB buffers go out at once,
    /// and `flush` or `send` send at once.
    pub const fn with_linger(mut self, linger: Duration) -> Self {
        self.linger = if linger.as_nanos() < 1_000 {
            Duration::from_micros(1)
        } else {
            linger
        };
        self
    }
    /// Hands each undeliverable message to `f` instead of the queue that
    /// [`Writer::take_dead_letters`](crate::Writer::take_dead_letters) drains.
    pub fn with_dead_letter(mut self, f: impl Fn(&[u8]) + Send + Sync + 'static) -> Self {
        self.dead_letter = Some(Arc::new(f));
        self
    }

    /// Reads what the listener sends back on the connection (its
    /// [`Connection::reply`](crate::Connection::reply)s) and hands each message to `f`, on a
    /// thread of its own per connection, with the same framing and limit as the messages
    /// written. Without it the writer never reads, and a listener that replies (an echo
    /// server) eventually blocks both sides once the socket buffers are full.
    ///
    /// [`Writer::close`](crate::Writer::close) then ends the connection gracefully: it stops
    /// writing (the listener sees the end of the stream) and waits up to
    /// [`with_reply_wait`](Self::with_reply_wait) for the listener to finish replying and
    /// close. Replies are counted in [`WriterStats::replies`](crate::WriterStats::replies); a
    /// reply stream that breaks the framing closes that connection (the writer reconnects for
    /// the next batch) and counts in `protocol_errors`.
    pub fn with_on_reply(mut self, f: impl Fn(&[u8]) + Send + Sync + 'static) -> Self {
        self.on_reply = Some(Arc::new(f));
        self
    }
    /// How long [`Writer::close`](crate::Writer::close) waits for the last replies, and in the
    /// acknowledged mode for the last acknowledgements (default 5 s).
    pub const fn with_reply_wait(mut self, wait: Duration) -> Self {
        self.reply_wait = wait;
        self
    }

    /// The acknowledged mode (default off; the listener needs
    /// [`ListenerConfig::with_acks`](crate::ListenerConfig::with_acks)). The writer opens
    /// every connection with a hello naming its session (random per writer) and keeps every
    /// message it sent until the listener acknowledges that its callback returned from it.
    /// After a reconnect it re-sends what was not acknowledged (the listener drops what it
    /// already delivered); what cannot be delivered within the retry policy, or is still
    /// unacknowledged when `close` has waited [`with_reply_wait`](Self::with_reply_wait),
    /// goes to the dead letters. `dial` fails with
    /// [`Error::Acked`](crate::Error::Acked) when the listener does not speak the mode.
    pub const fn with_acks(mut self, on: bool) -> Self {
        self.acks = on;
        self
    }
    /// The most the acknowledged mode keeps unacknowledged (default 8 MiB and 1,048,576
    /// messages, whichever comes first); see [`with_window_full`](Self::with_window_full).
    /// The bytes are memory: a writing thread's full 64 KiB buffer is kept as it is until
    /// acknowledged (not copied) and counts whole, and spare buffers kept for reuse count
    /// too.
    pub const fn with_ack_window(mut self, bytes: usize, messages: u64) -> Self {
        self.window_bytes = at_least(bytes, 1);
        self.window_messages = if messages == 0 { 1 } else { messages };
        self
    }
    /// What `write` does when the window is full (default [`WindowFull::Block`]).
    pub const fn with_window_full(mut self, policy: WindowFull) -> Self {
        self.window_full = policy;
        self
    }

    /// TLS (feature `tls`): every connection runs a TLS handshake with `config` (rustls's;
    /// for mutual TLS, one with a client certificate) and checks that the listener's
    /// certificate is valid for `server_name`. The handshake must finish within the connect
    /// timeout. A certificate refused either way is an [`Error::Tls`](crate::Error::Tls) and is
    /// never retried: `dial` returns it, and once a connection made later is refused so,
    /// `write` returns it and what was queued goes to the dead letters.
    ///
    /// Under TLS 1.3 the listener judges our certificate (or that we sent none) after our side
    /// of the handshake is done, so `dial` (and each reconnection) waits for its first message
    /// (the session tickets rustls, OpenSSL and Go send at once) to hear the verdict: up to
    /// the connect timeout with a listener that sends nothing.
    ///
    /// A TLS writer always reads its connection, with or without `with_on_reply` (the
    /// listener's session tickets and alerts must not be left unread: closing would reset the
    /// connection and lose what the listener had not read yet), so `close` ends the stream
    /// and waits up to `with_reply_wait` for the listener to close its side, as with replies.
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn with_tls(
        mut self,
        config: Arc<rustls::ClientConfig>,
        server_name: rustls::pki_types::ServerName<'static>,
    ) -> Self {
        self.tls = Some(crate::tls::ClientTls {
            config,
            name: server_name,
        });
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
    pub(crate) fn tls(&self) -> Option<&crate::tls::ClientTls> {
        self.tls.as_ref()
    }

    /// Whether the acknowledged mode is on.
    pub const fn acks(&self) -> bool {
        self.acks
    }
    /// The acknowledgement window: bytes and messages.
    pub const fn ack_window(&self) -> (usize, u64) {
        (self.window_bytes, self.window_messages)
    }
    /// What `write` does when the window is full.
    pub const fn window_full(&self) -> WindowFull {
        self.window_full
    }

    /// The framing configuration in force (its `max_frame_len` is the longest message).
    pub const fn framing(&self) -> Config {
        self.framing
    }
    /// Whether the connection gets TCP_NODELAY.
    pub const fn nodelay(&self) -> bool {
        self.nodelay
    }
    /// The reconnect policy.
    pub const fn retry(&self) -> RetryPolicy {
        self.retry
    }
    /// Timeout of each connection attempt.
    pub const fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }
    /// The write timeout (`None`: never).
    pub const fn write_timeout(&self) -> Option<Duration> {
        self.write_timeout
    }
    /// Memory for buffered messages, in bytes.
    pub const fn max_buffer(&self) -> usize {
        self.max_buffer
    }
    /// The linger of a streaming thread's last messages.
    pub const fn linger(&self) -> Duration {
        self.linger
    }
    /// The dead-letter callback, if one is set.
    pub fn dead_letter(&self) -> Option<&DeadLetterFn> {
        self.dead_letter.as_deref()
    }
    /// The reply callback, if one is set.
    pub fn on_reply(&self) -> Option<&ReplyFn> {
        self.on_reply.as_deref()
    }
    /// How long `close` waits for the last replies.
    pub const fn reply_wait(&self) -> Duration {
        self.reply_wait
    }
    pub(super) fn on_reply_arc(&self) -> Option<Arc<ReplyFn>> {
        self.on_reply.clone()
    }
}

//! Writer settings.

use std::sync::Arc;
use std::time::Duration;

use buffstreams_framing::Config;

use super::RetryPolicy;

/// Called with the payload of every message that could not be delivered.
pub type DeadLetterFn = dyn Fn(&[u8]) + Send + Sync;

/// Called with every message the listener sends back on the writer's connection.
pub type ReplyFn = dyn Fn(&[u8]) + Send + Sync;

/// Writer settings. Defaults: max message 4096 bytes, TCP_NODELAY on, [`RetryPolicy::default`],
/// 3 s connect timeout, 30 s write timeout, 4 MiB of buffers (64 KiB per writing thread),
/// 5 ms linger, dead letters kept in a queue, nothing read back from the listener.
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
}

impl Default for WriterConfig {
    fn default() -> Self {
        Self {
            framing: Config::new(),
            nodelay: true,
            retry: RetryPolicy::default(),
            connect_timeout: Duration::from_secs(3),
            write_timeout: Some(Duration::from_secs(30)),
            max_buffer: 4 << 20,
            linger: Duration::from_millis(5),
            dead_letter: None,
            on_reply: None,
            reply_wait: Duration::from_secs(5),
        }
    }
}

impl std::fmt::Debug for WriterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriterConfig")
            .field("framing", &self.framing)
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
            .finish()
    }
}

impl WriterConfig {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Longest message `write` accepts (default 4096 bytes; the framing crate's
    /// `max_frame_len`); longer ones are an [`Error::Encode`](crate::Error::Encode).
    pub fn with_max_frame_len(mut self, max: usize) -> Self {
        self.framing = self.framing.with_max_frame_len(max);
        self
    }
    /// The whole framing configuration at once.
    pub fn with_framing(mut self, framing: Config) -> Self {
        self.framing = framing;
        self
    }
    /// TCP_NODELAY (default on: the writer batches by itself).
    pub fn with_nodelay(mut self, on: bool) -> Self {
        self.nodelay = on;
        self
    }
    /// The reconnect policy.
    pub fn with_retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }
    /// Timeout of each connection attempt (at least 1 ms).
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout.max(Duration::from_millis(1));
        self
    }
    /// A socket write that makes no progress for this long counts as a broken connection
    /// (default 30 s; `None` or zero: wait for a peer that stopped reading forever).
    pub fn with_write_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.write_timeout = timeout.filter(|d| !d.is_zero());
        self
    }
    /// Memory for buffered messages (default 4 MiB): `bytes / 64 KiB` buffers of 64 KiB (at
    /// least two, smaller then). Threads writing through the writer get one of their own
    /// while they last; the last one is shared by the remaining threads, under a lock. A
    /// thread whose buffer is full sends it before queueing more: that is the backpressure.
    pub fn with_max_buffer(mut self, bytes: usize) -> Self {
        self.max_buffer = bytes.max(1);
        self
    }
    /// The longest a streaming thread's last messages wait once it stops (default 5 ms). The
    /// flusher first looks 100 µs after it saw the thread streaming (the tail of a short
    /// burst goes out then), and backs off to `linger` while the thread keeps streaming: each
    /// look is a timed wake-up that costs the writing thread throughput. A message written
    /// after a pause is sent at once whatever this is, full 64 KiB buffers go out at once,
    /// and `flush` or `send` send at once.
    pub fn with_linger(mut self, linger: Duration) -> Self {
        self.linger = linger.max(Duration::from_micros(1));
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
    /// the next batch) and counts in `reply_errors`.
    pub fn with_on_reply(mut self, f: impl Fn(&[u8]) + Send + Sync + 'static) -> Self {
        self.on_reply = Some(Arc::new(f));
        self
    }
    /// How long [`Writer::close`](crate::Writer::close) waits for the last replies (default
    /// 5 s; only with [`with_on_reply`](Self::with_on_reply)).
    pub fn with_reply_wait(mut self, wait: Duration) -> Self {
        self.reply_wait = wait;
        self
    }

    /// The framing configuration in force (its `max_frame_len` is the longest message).
    pub fn framing(&self) -> Config {
        self.framing
    }
    /// Whether the connection gets TCP_NODELAY.
    pub fn nodelay(&self) -> bool {
        self.nodelay
    }
    /// The reconnect policy.
    pub fn retry(&self) -> RetryPolicy {
        self.retry
    }
    /// Timeout of each connection attempt.
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }
    /// The write timeout (`None`: never).
    pub fn write_timeout(&self) -> Option<Duration> {
        self.write_timeout
    }
    /// Memory for buffered messages, in bytes.
    pub fn max_buffer(&self) -> usize {
        self.max_buffer
    }
    /// The linger of a streaming thread's last messages.
    pub fn linger(&self) -> Duration {
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
    pub fn reply_wait(&self) -> Duration {
        self.reply_wait
    }
    pub(super) fn on_reply_arc(&self) -> Option<Arc<ReplyFn>> {
        self.on_reply.clone()
    }
}

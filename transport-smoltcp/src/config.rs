//! Configuration of the listener and the writer: `const` builders with getters.

use buffstreams_framing::Config;
use smoltcp::time::Duration;

/// Listener options. Build with the `with_*` methods; every method is `const`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ListenerConfig {
    pub(crate) port: u16,
    pub(crate) framing: Config,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) frame_timeout: Option<Duration>,
    pub(crate) session_ttl: Duration,
    pub(crate) ack_delay: Duration,
}

impl ListenerConfig {
    /// Listens on `port`; framing defaults (4096-byte maximum, oversize rejected); idle
    /// connections closed after 120 s; a message must arrive whole within 10 s of its first
    /// byte.
    pub const fn new(port: u16) -> Self {
        Self {
            port,
            framing: Config::new(),
            idle_timeout: Some(Duration::from_secs(120)),
            frame_timeout: Some(Duration::from_secs(10)),
            session_ttl: Duration::from_secs(600),
            ack_delay: Duration::ZERO,
        }
    }

    /// Acknowledged mode: how long an acknowledgement waits for more messages to cover
    /// (default zero: one goes out at the end of every poll that handled messages, which costs
    /// a 13-byte frame and keeps a writer with a small window flowing).
    pub const fn with_ack_delay(mut self, delay: Duration) -> Self {
        self.ack_delay = delay;
        self
    }

    /// How long an acknowledgement waits for more messages to cover.
    pub const fn ack_delay(&self) -> Duration {
        self.ack_delay
    }

    /// Acknowledged mode ([`Listener::with_acks`](crate::Listener::with_acks)): how long an
    /// idle writer session is remembered (default 10 minutes).
    pub const fn with_session_ttl(mut self, ttl: Duration) -> Self {
        self.session_ttl = ttl;
        self
    }

    /// How long an idle writer session is remembered.
    pub const fn session_ttl(&self) -> Duration {
        self.session_ttl
    }

    /// The framing options: maximum message length, oversize policy, length counting the
    /// header. The effective maximum is also capped by each slot's storage.
    pub const fn with_framing(mut self, framing: Config) -> Self {
        self.framing = framing;
        self
    }

    /// The longest message (default 4096 bytes, also capped by each slot's storage):
    /// shorthand for the framing's maximum.
    pub const fn with_max_frame_len(mut self, max: usize) -> Self {
        self.framing = self.framing.with_max_frame_len(max);
        self
    }

    /// Aborts a connection that has sent nothing for this long (`None`: never). A slot held by
    /// a silent peer serves nobody else, so firmware should keep a timeout.
    pub const fn with_idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Aborts a connection whose message has not arrived whole this long after its first byte
    /// (`None`: never). Unlike the idle timeout, a peer cannot hold it off by trickling bytes:
    /// without it, one byte every two minutes would keep a slot forever.
    pub const fn with_frame_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.frame_timeout = timeout;
        self
    }

    /// The frame deadline.
    pub const fn frame_timeout(&self) -> Option<Duration> {
        self.frame_timeout
    }

    /// The port.
    pub const fn port(&self) -> u16 {
        self.port
    }

    /// The framing options.
    pub const fn framing(&self) -> Config {
        self.framing
    }

    /// The idle timeout.
    pub const fn idle_timeout(&self) -> Option<Duration> {
        self.idle_timeout
    }
}

/// When and how often a [`Writer`](crate::Writer) dials again: exponential backoff with jitter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct RetryPolicy {
    pub(crate) initial: Duration,
    pub(crate) max: Duration,
    pub(crate) max_attempts: Option<u32>,
}

impl RetryPolicy {
    /// First retry after 100 ms (± jitter), doubling up to 10 s, forever.
    pub const fn new() -> Self {
        Self {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(10),
            max_attempts: None,
        }
    }

    /// The delay before the first retry; each further failure doubles it.
    pub const fn with_initial_backoff(mut self, delay: Duration) -> Self {
        self.initial = delay;
        self
    }

    /// The longest delay between attempts.
    pub const fn with_max_backoff(mut self, delay: Duration) -> Self {
        self.max = delay;
        self
    }

    /// Give up after this many failed attempts in a row (`None`: never). A writer that gave
    /// up stays [`Status::GaveUp`](crate::Status::GaveUp) until
    /// [`Writer::reconnect`](crate::Writer::reconnect).
    pub const fn with_max_attempts(mut self, attempts: Option<u32>) -> Self {
        self.max_attempts = attempts;
        self
    }

    /// The delay before the first retry.
    pub const fn initial_backoff(&self) -> Duration {
        self.initial
    }

    /// The longest delay between attempts.
    pub const fn max_backoff(&self) -> Duration {
        self.max
    }

    /// Failed attempts in a row before giving up.
    pub const fn max_attempts(&self) -> Option<u32> {
        self.max_attempts
    }

    /// The delay after `failures` failed attempts in a row (1 = the first), before jitter.
    pub(crate) fn delay(&self, failures: u32) -> Duration {
        let shift = failures.saturating_sub(1).min(20);
        let micros = self.initial.total_micros().saturating_mul(1u64 << shift);
        Duration::from_micros(micros.min(self.max.total_micros()))
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self::new()
    }
}

/// Writer options. Build with the `with_*` methods; every method is `const`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct WriterConfig {
    pub(crate) framing: Config,
    pub(crate) retry: RetryPolicy,
    pub(crate) connect_timeout: Duration,
    pub(crate) seed: u32,
    pub(crate) ack_timeout: Duration,
}

impl WriterConfig {
    /// Framing defaults (4096-byte maximum), [`RetryPolicy::new`], a fixed jitter seed.
    pub const fn new() -> Self {
        Self {
            framing: Config::new(),
            retry: RetryPolicy::new(),
            connect_timeout: Duration::from_secs(5),
            seed: 0x9e37_79b9,
            ack_timeout: Duration::from_secs(30),
        }
    }

    /// The longest message, written or read back (default 4096 bytes): shorthand for the
    /// framing's maximum.
    pub const fn with_max_frame_len(mut self, max: usize) -> Self {
        self.framing = self.framing.with_max_frame_len(max);
        self
    }

    /// How long a connection attempt may go unanswered before it counts as failed
    /// (default 5 s).
    pub const fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The connect timeout.
    pub const fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// The framing options (maximum message length for writes and for replies read).
    pub const fn with_framing(mut self, framing: Config) -> Self {
        self.framing = framing;
        self
    }

    /// The reconnect policy.
    pub const fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Seeds the backoff jitter and the choice of local ports. Give each device its own (a
    /// hardware RNG value, or bytes of its MAC address) so a fleet does not reconnect in
    /// lockstep and a rebooted device does not reuse its last port.
    pub const fn with_seed(mut self, seed: u32) -> Self {
        self.seed = seed;
        self
    }

    /// Acknowledged mode ([`Writer::with_acks`](crate::Writer::with_acks)): how long
    /// messages may wait for an acknowledgement, with none arriving, before the connection
    /// counts as broken and is redialled (default 30 s; zero: never).
    pub const fn with_ack_timeout(mut self, timeout: Duration) -> Self {
        self.ack_timeout = timeout;
        self
    }

    /// The framing options.
    pub const fn framing(&self) -> Config {
        self.framing
    }

    /// The reconnect policy.
    pub const fn retry(&self) -> RetryPolicy {
        self.retry
    }

    /// How long unacknowledged messages wait before the connection counts as broken.
    pub const fn ack_timeout(&self) -> Duration {
        self.ack_timeout
    }
}

impl Default for WriterConfig {
    fn default() -> Self {
        Self::new()
    }
}

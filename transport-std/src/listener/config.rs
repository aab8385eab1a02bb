//! Listener settings.

use std::time::Duration;

use buffstreams_framing::{Config, Oversize};

/// What the listener does with a connection beyond `max_connections`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OverLimit {
    /// Accept and close it at once (counted in `connections_refused`).
    #[default]
    Refuse,
    /// Stop accepting until a connection closes; new peers wait in the kernel's backlog.
    Wait,
}

/// Listener settings. `ListenerConfig::default()` is: max message 4096 bytes, oversize
/// frames rejected, idle timeout 120 s, reply write timeout 30 s, 1024 connections (refuse
/// beyond), TCP_NODELAY on, 64 KiB read buffer per connection, busy polling for 20 µs while
/// a peer streams.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListenerConfig {
    framing: Config,
    idle_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
    max_connections: usize,
    over_limit: OverLimit,
    nodelay: bool,
    read_buffer: usize,
    busy_poll: Duration,
}

impl Default for ListenerConfig {
    fn default() -> Self {
        Self {
            framing: Config::new(),
            idle_timeout: Some(Duration::from_secs(120)),
            write_timeout: Some(Duration::from_secs(30)),
            max_connections: 1024,
            over_limit: OverLimit::Refuse,
            nodelay: true,
            read_buffer: 64 * 1024,
            busy_poll: Duration::from_micros(20),
        }
    }
}

impl ListenerConfig {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Longest message accepted (default 4096 bytes; the framing crate's `max_frame_len`). A
    /// header declaring more is handled by the oversize policy before any byte of it is
    /// buffered.
    pub fn with_max_frame_len(mut self, max: usize) -> Self {
        self.framing = self.framing.with_max_frame_len(max);
        self
    }
    /// `Reject` (default) closes a connection that declares an oversize message; `Skip`
    /// discards that message's bytes and goes on with the next one.
    pub fn with_oversize(mut self, policy: Oversize) -> Self {
        self.framing = self.framing.with_oversize(policy);
        self
    }
    /// The whole framing configuration at once.
    pub fn with_framing(mut self, framing: Config) -> Self {
        self.framing = framing;
        self
    }
    /// Close a connection that sends nothing for this long (`None` or zero: never).
    pub fn with_idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.idle_timeout = timeout.filter(|d| !d.is_zero());
        self
    }
    /// Give up on a peer that does not read its replies for this long (`None` or zero:
    /// never). Also bounds how long a graceful shutdown can wait for a connection blocked in
    /// a reply.
    pub fn with_write_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.write_timeout = timeout.filter(|d| !d.is_zero());
        self
    }
    /// Connections served at once (at least 1).
    pub fn with_max_connections(mut self, max: usize) -> Self {
        self.max_connections = max.max(1);
        self
    }
    /// What happens beyond `max_connections`.
    pub fn with_over_limit(mut self, policy: OverLimit) -> Self {
        self.over_limit = policy;
        self
    }
    /// TCP_NODELAY on accepted connections (default on), so replies go out at once.
    pub fn with_nodelay(mut self, on: bool) -> Self {
        self.nodelay = on;
        self
    }
    /// Read buffer per connection (default 64 KiB; at least 64 bytes).
    pub fn with_read_buffer(mut self, bytes: usize) -> Self {
        self.read_buffer = bytes.max(64);
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
    pub fn with_busy_poll(mut self, budget: Duration) -> Self {
        self.busy_poll = budget;
        self
    }

    /// The framing configuration in force (its `max_frame_len` is the longest message).
    pub fn framing(&self) -> Config {
        self.framing
    }
    /// The idle timeout (`None`: never).
    pub fn idle_timeout(&self) -> Option<Duration> {
        self.idle_timeout
    }
    /// The reply write timeout (`None`: never).
    pub fn write_timeout(&self) -> Option<Duration> {
        self.write_timeout
    }
    /// Connections served at once.
    pub fn max_connections(&self) -> usize {
        self.max_connections
    }
    /// What happens beyond `max_connections`.
    pub fn over_limit(&self) -> OverLimit {
        self.over_limit
    }
    /// Whether accepted connections get TCP_NODELAY.
    pub fn nodelay(&self) -> bool {
        self.nodelay
    }
    /// Read buffer per connection, in bytes.
    pub fn read_buffer(&self) -> usize {
        self.read_buffer
    }
    /// The busy-polling budget (zero: off).
    pub fn busy_poll(&self) -> Duration {
        self.busy_poll
    }
}

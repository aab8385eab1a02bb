//! The reconnect policy.

use std::time::Duration;

/// Reconnect policy: exponential backoff with jitter, bounded in attempts and time.
///
/// Defaults: 8 attempts, 20 ms doubling up to 2 s, "equal jitter" (a random wait between half
/// and all of the backoff), 10 s deadline per undelivered batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    max_attempts: u32,
    initial_backoff: Duration,
    max_backoff: Duration,
    deadline: Option<Duration>,
    jitter: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_secs(2),
            deadline: Some(Duration::from_secs(10)),
            jitter: true,
        }
    }
}

impl RetryPolicy {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }
    /// One attempt, no waiting: undeliverable messages go to the dead-letter queue at once.
    pub fn never() -> Self {
        Self {
            max_attempts: 1,
            deadline: Some(Duration::ZERO),
            ..Self::default()
        }
    }

    /// Connection attempts (and write failures) per batch before its messages are
    /// dead-lettered (at least 1).
    pub fn with_max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n.max(1);
        self
    }
    /// First wait after a failure; it doubles after every further one, up to the maximum.
    pub fn with_initial_backoff(mut self, delay: Duration) -> Self {
        self.initial_backoff = delay;
        self
    }
    /// Longest wait between two attempts (never less than the initial backoff).
    pub fn with_max_backoff(mut self, delay: Duration) -> Self {
        self.max_backoff = delay;
        self
    }
    /// Give up on a batch this long after its first failure (`None`: attempts only).
    pub fn with_deadline(mut self, deadline: Option<Duration>) -> Self {
        self.deadline = deadline;
        self
    }
    /// Randomise each wait between half and all of the backoff (default on), so many writers
    /// do not reconnect in lockstep.
    pub fn with_jitter(mut self, on: bool) -> Self {
        self.jitter = on;
        self
    }

    /// Attempts per batch.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }
    /// The first wait.
    pub fn initial_backoff(&self) -> Duration {
        self.initial_backoff
    }
    /// The longest wait (at least the initial backoff).
    pub fn max_backoff(&self) -> Duration {
        self.max_backoff.max(self.initial_backoff)
    }
    /// The deadline per batch (`None`: attempts only).
    pub fn deadline(&self) -> Option<Duration> {
        self.deadline
    }
    /// Whether waits are randomised.
    pub fn jitter(&self) -> bool {
        self.jitter
    }

    pub(super) fn wait_after(&self, failures: u32) -> Duration {
        let factor = 1u32
            .checked_shl(failures.saturating_sub(1))
            .unwrap_or(u32::MAX);
        let base = self
            .initial_backoff
            .saturating_mul(factor)
            .min(self.max_backoff());
        if self.jitter && !base.is_zero() {
            let half = base / 2;
            half + Duration::from_nanos(fastrand::u64(0..=(base - half).as_nanos() as u64))
        } else {
            base
        }
    }
}

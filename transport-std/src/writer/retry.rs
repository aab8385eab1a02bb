//! The reconnect policy.

use std::time::Duration;

/// Reconnect policy: exponential backoff with jitter, bounded in attempts and time.
///
/// Defaults: 8 attempts, 20 ms doubling up to 2 s, "equal jitter" (a random wait between half
/// and all of the backoff), 10 s deadline per undelivered batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    max_attempts: Option<u32>,
    initial_backoff: Duration,
    max_backoff: Duration,
    deadline: Option<Duration>,
    jitter: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self::new()
    }
}

impl RetryPolicy {
    /// The defaults.
    pub const fn new() -> Self {
        Self {
            max_attempts: Some(8),
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_secs(2),
            deadline: Some(Duration::from_secs(10)),
            jitter: true,
        }
    }
    /// One attempt, no waiting: undeliverable messages go to the dead-letter queue at once.
    pub const fn never() -> Self {
        Self::new()
            .with_max_attempts(Some(1))
            .with_deadline(Some(Duration::ZERO))
    }

    /// Connection attempts (and write failures) per batch before its messages are
    /// dead-lettered (`None`: no limit in attempts, only the deadline, and with no deadline
    /// either the writer retries for as long as it takes, and `write` waits once its buffers
    /// are full; `Some(0)` counts as `Some(1)`). The same knob as transport-smoltcp's,
    /// where a poll loop never gives up unless told to.
    pub const fn with_max_attempts(mut self, attempts: Option<u32>) -> Self {
        self.max_attempts = match attempts {
            Some(0) => Some(1),
            other => other,
        };
        self
    }
    /// First wait after a failure; it doubles after every further one, up to the maximum.
    pub const fn with_initial_backoff(mut self, delay: Duration) -> Self {
        self.initial_backoff = delay;
        self
    }
    /// Longest wait between two attempts (never less than the initial backoff).
    pub const fn with_max_backoff(mut self, delay: Duration) -> Self {
        self.max_backoff = delay;
        self
    }
    /// Give up on a batch this long after its first failure (`None`: attempts only).
    pub const fn with_deadline(mut self, deadline: Option<Duration>) -> Self {
        self.deadline = deadline;
        self
    }
    /// Randomise each wait between half and all of the backoff (default on), so many writers
    /// do not reconnect in lockstep.
    pub const fn with_jitter(mut self, on: bool) -> Self {
        self.jitter = on;
        self
    }

    /// Attempts per batch (`None`: no limit).
    pub const fn max_attempts(&self) -> Option<u32> {
        self.max_attempts
    }
    /// The first wait.
    pub const fn initial_backoff(&self) -> Duration {
        self.initial_backoff
    }
    /// The longest wait (at least the initial backoff).
    pub const fn max_backoff(&self) -> Duration {
        if self.max_backoff.as_nanos() < self.initial_backoff.as_nanos() {
            self.initial_backoff
        } else {
            self.max_backoff
        }
    }
    /// The deadline per batch (`None`: attempts only).
    pub const fn deadline(&self) -> Option<Duration> {
        self.deadline
    }
    /// Whether waits are randomised.
    pub const fn jitter(&self) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_are_at_least_one_or_unlimited() {
        assert_eq!(RetryPolicy::new().max_attempts(), Some(8));
        assert_eq!(
            RetryPolicy::new().with_max_attempts(Some(0)).max_attempts(),
            Some(1)
        );
        assert_eq!(
            RetryPolicy::new().with_max_attempts(None).max_attempts(),
            None
        );
        assert_eq!(RetryPolicy::never().max_attempts(), Some(1));
        assert_eq!(RetryPolicy::never().deadline(), Some(Duration::ZERO));
    }

    #[test]
    fn the_longest_wait_is_never_below_the_first() {
        let p = RetryPolicy::new()
            .with_initial_backoff(Duration::from_secs(3))
            .with_max_backoff(Duration::from_secs(1))
            .with_jitter(false);
        assert_eq!(p.max_backoff(), Duration::from_secs(3));
        assert_eq!(p.wait_after(1), Duration::from_secs(3));
        assert_eq!(p.wait_after(40), Duration::from_secs(3));
    }
}

//! A connection's read deadlines: the idle timeout between messages and the frame deadline
//! inside one, kept on the socket as its read timeout with as few `setsockopt` calls as
//! possible (a streaming peer must not pay one per read).

use std::time::{Duration, Instant};

/// Which deadline passed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Expired {
    /// Nothing arrived for the idle timeout.
    Idle,
    /// A frame was not completed within the frame timeout of its first byte (or of the
    /// previous message, while messages keep completing).
    Frame,
}

/// The deadlines of one connection and the read timeout its socket has now.
#[derive(Debug)]
pub(super) struct Deadlines {
    idle: Option<Duration>,
    frame: Option<Duration>,
    /// Start of the frame deadline: the read that brought a frame's first byte, restarted by
    /// every read that completed a message; `None` between frames.
    frame_since: Option<Instant>,
    last_data: Instant,
    /// The socket's read timeout now.
    set: Option<Duration>,
}

/// The shortest read timeout set on a socket (zero would mean "none").
const MIN_TIMEOUT: Duration = Duration::from_millis(1);

impl Deadlines {
    /// Deadlines for a connection accepted at `now`, whose socket's read timeout is `idle`.
    pub(super) fn new(idle: Option<Duration>, frame: Option<Duration>, now: Instant) -> Self {
        Self {
            idle,
            frame,
            frame_since: None,
            last_data: now,
            set: idle,
        }
    }

    /// Records a read of data at `now`; `mid_frame`: a frame is incomplete after it;
    /// `completed`: it completed at least one message.
    pub(super) fn after_read(&mut self, now: Instant, mid_frame: bool, completed: bool) {
        self.last_data = now;
        self.frame_since = match self.frame_since {
            _ if !mid_frame => None,
            Some(since) if !completed => Some(since),
            _ => Some(now),
        };
    }

    /// The deadline that has passed at `now`, if any (the frame deadline first).
    pub(super) fn expired(&self, now: Instant) -> Option<Expired> {
        if let (Some(since), Some(limit)) = (self.frame_since, self.frame)
            && now.saturating_duration_since(since) >= limit
        {
            return Some(Expired::Frame);
        }
        match self.idle {
            Some(idle) if now.saturating_duration_since(self.last_data) >= idle => {
                Some(Expired::Idle)
            }
            _ => None,
        }
    }

    /// The read timeout the socket needs for the next read at `now`, when it differs from
    /// the one it has (then the caller sets it). Inside a frame it is what is left of the
    /// frame deadline, rounded down to a sixteenth of it, so that while messages keep
    /// completing it stays the same from read to read; never later than the deadline.
    pub(super) fn next_timeout(&mut self, now: Instant) -> Option<Option<Duration>> {
        let want = match (self.frame_since, self.frame) {
            (Some(since), Some(limit)) => {
                let left = limit.saturating_sub(now.saturating_duration_since(since));
                let step = (limit / 16).max(MIN_TIMEOUT);
                let left = if left < step {
                    left.max(MIN_TIMEOUT)
                } else {
                    step.saturating_mul(
                        u32::try_from(left.as_nanos() / step.as_nanos()).unwrap_or(u32::MAX),
                    )
                };
                Some(self.idle.map_or(left, |idle| idle.min(left)))
            }
            _ => self.idle,
        };
        (want != self.set).then(|| {
            self.set = want;
            want
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn idle_between_frames_and_the_frame_deadline_inside_one() {
        let t0 = Instant::now();
        let mut d = Deadlines::new(Some(120 * S), Some(10 * S), t0);
        assert_eq!(
            d.next_timeout(t0),
            None,
            "accepted with the idle timeout set"
        );
        // Half a header arrives: the frame deadline starts.
        d.after_read(t0, true, false);
        assert_eq!(d.next_timeout(t0), Some(Some(10 * S)));
        // Bytes trickle in without completing anything: the deadline does not move.
        let t = t0 + 9 * S;
        d.after_read(t, true, false);
        assert_eq!(d.expired(t), None);
        // What is left (1 s), rounded down to sixteenths of the deadline.
        assert_eq!(d.next_timeout(t), Some(Some(S * 10 / 16)));
        assert_eq!(d.expired(t0 + 10 * S), Some(Expired::Frame));
        // The frame completes: back to the idle timeout.
        d.after_read(t0 + 10 * S, false, true);
        assert_eq!(d.expired(t0 + 10 * S), None);
        assert_eq!(d.next_timeout(t0 + 10 * S), Some(Some(120 * S)));
        assert_eq!(d.expired(t0 + 130 * S), Some(Expired::Idle));
    }

    #[test]
    fn a_stream_of_messages_keeps_the_timeout_without_resetting_it() {
        let t0 = Instant::now();
        let mut d = Deadlines::new(Some(120 * S), Some(10 * S), t0);
        d.after_read(t0, true, true);
        assert!(d.next_timeout(t0).is_some());
        let mut resets = 0;
        for i in 1..10_000u32 {
            // Every read completes messages and ends inside the next one.
            let t = t0 + Duration::from_micros(u64::from(i) * 7);
            d.after_read(t, true, true);
            assert_eq!(d.expired(t), None);
            resets += u32::from(d.next_timeout(t + Duration::from_micros(3)).is_some());
        }
        // Once from the full deadline to one step below it, then never again.
        assert!(
            resets <= 1,
            "{resets} setsockopt calls: one per read would cost a stream"
        );
    }

    #[test]
    fn never_later_than_the_deadline_and_never_zero() {
        let t0 = Instant::now();
        let mut d = Deadlines::new(None, Some(10 * S), t0);
        d.after_read(t0, true, false);
        for ms in (0..10_000u64).step_by(37) {
            let now = t0 + Duration::from_millis(ms);
            let left = 10 * S - Duration::from_millis(ms);
            let _ = d.next_timeout(now);
            let set = d.set.expect("a frame deadline is set");
            assert!(set <= left.max(MIN_TIMEOUT), "{set:?} > {left:?}");
            assert!(!set.is_zero());
        }
        assert_eq!(d.next_timeout(t0 + 10 * S), Some(Some(MIN_TIMEOUT)));
    }

    #[test]
    fn without_timeouts_reads_block() {
        let t0 = Instant::now();
        let mut d = Deadlines::new(None, None, t0);
        d.after_read(t0, true, false);
        assert_eq!(d.next_timeout(t0), None);
        assert_eq!(d.expired(t0 + 1000 * S), None);
    }
}

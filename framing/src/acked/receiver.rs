//! The listener's side of one connection in the acknowledged mode as a sans-io state machine:
//! it reads the hello, opens the writer's session in a [`Sessions`] table, numbers every
//! message, says whether it may be a repeat, and paces the acknowledgements.

use super::sessions::{OpenError, Opened, SessionSlot, Sessions};
use super::wire::{ACK_LEN, HELLO_LEN, Hello, SessionId, WELCOME_LEN, WireError, ack, welcome};

/// While a writer streams, an acknowledgement goes out at least every this many messages
/// (by default: [`Receiver::with_ack_every`])...
pub const ACK_EVERY: u64 = 16_384;

/// ... or every this many bytes of messages, whichever comes first: a writer's window must hold
/// more than both, or it waits for the acknowledgement delay once per window.
pub const ACK_BYTES: u64 = 2 << 20;

/// By default an acknowledgement waits this long (µs) for more messages to cover before it
/// goes out ([`Receiver::with_ack_delay_us`]).
pub const ACK_DELAY_US: u64 = 500;

/// What the application is told about a message in the acknowledged mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Delivery {
    /// The writer's session: random per writer.
    pub session: SessionId,
    /// The message's number in its session, from 1, in the order the writer sent them.
    pub seq: u64,
    /// Whether this message may have been handed to the application before: it was written
    /// to a listener before this one learned the session (this listener is a new process, or
    /// forgot the session as idle or to make room), and this one has not delivered it. `false`
    /// means it is certainly the first delivery; an application whose state survives
    /// restarts can drop the `true` ones it has seen, by `(session, seq)`.
    pub may_repeat: bool,
}

#[derive(Clone, Copy, Debug)]
struct Serving {
    opened: Opened,
    conn: u64,
    hello: Hello,
    /// The number of the next message on this connection.
    next_seq: u64,
    /// Every message up to this one was handed to the application and its callback returned.
    delivered: u64,
    /// The last `delivered` acknowledged.
    acked: u64,
    /// Bytes of messages delivered since then.
    bytes: u64,
    /// `delivered` when [`Receiver::poll_ack`] last looked, and since when it has not moved.
    polled: u64,
    quiet_since: u64,
}

#[derive(Clone, Copy, Debug)]
enum State {
    Hello,
    Serving(Serving),
    Closed,
}

/// One connection at an acknowledged listener: see the [module documentation](super) for how
/// a transport drives it.
#[derive(Clone, Copy, Debug)]
pub struct Receiver {
    pre: [u8; HELLO_LEN],
    pre_len: usize,
    state: State,
    ack_delay_us: u64,
    ack_every: u64,
    ack_bytes: u64,
}

impl Default for Receiver {
    fn default() -> Self {
        Self::new()
    }
}

impl Receiver {
    /// A connection that has sent nothing yet.
    pub const fn new() -> Self {
        Self {
            pre: [0; HELLO_LEN],
            pre_len: 0,
            state: State::Hello,
            ack_delay_us: ACK_DELAY_US,
            ack_every: ACK_EVERY,
            ack_bytes: ACK_BYTES,
        }
    }

    /// While a writer streams, acknowledge at least every `messages` messages or `bytes`
    /// bytes of them, whichever comes first (default [`ACK_EVERY`], [`ACK_BYTES`]). Fewer
    /// acknowledgements cost the writer less (each one wakes a thread on std); a writer whose
    /// window holds less than either waits for the acknowledgement delay once per window.
    pub const fn with_ack_every(mut self, messages: u64, bytes: u64) -> Self {
        self.ack_every = messages;
        self.ack_bytes = bytes;
        self
    }

    /// How long an acknowledgement waits for more messages to cover (default
    /// [`ACK_DELAY_US`]). A writer whose window is full waits this long for room, once per
    /// window: where acknowledging is cheap (a poll loop) or windows are small (firmware),
    /// 0 acknowledges at the end of every chunk of messages; where each one wakes a thread
    /// (transport-std), coalescing them pays.
    pub const fn with_ack_delay_us(mut self, us: u64) -> Self {
        self.ack_delay_us = us;
        self
    }

    /// Takes the connection's first bytes until the hello is whole: how many of `input` it
    /// took, and the hello once complete (the bytes after it are the first frames). Every
    /// byte is judged as it arrives, so a plain peer is told apart at its first byte.
    ///
    /// # Errors
    /// [`WireError`] when the connection does not open with a hello of this version: close it.
    pub fn read_hello(&mut self, input: &[u8]) -> Result<(usize, Option<Hello>), WireError> {
        if !matches!(self.state, State::Hello) {
            return Ok((0, None));
        }
        let take = HELLO_LEN.saturating_sub(self.pre_len).min(input.len());
        let end = self.pre_len + take;
        if let (Some(to), Some(from)) = (self.pre.get_mut(self.pre_len..end), input.get(..take)) {
            to.copy_from_slice(from);
        }
        self.pre_len = end;
        let hello = Hello::parse(self.pre.get(..end).unwrap_or_default())?;
        Ok((take, hello))
    }

    /// Whether the connection is inside its hello (some bytes of it came, not all): a
    /// transport counts it against its frame deadline.
    pub fn is_mid_hello(&self) -> bool {
        matches!(self.state, State::Hello) && self.pre_len > 0
    }

    /// Opens `hello`'s session in `sessions` for this connection (`conn`: an id the transport
    /// gives each connection, increasing in the order they were accepted, never reused; see
    /// [`Sessions::open`]). Returns the welcome's payload,
    /// to send back framed like a reply; messages are numbered from there.
    ///
    /// # Errors
    /// [`OpenError`]: on [`Held`](OpenError::Held) end the other (older) connection, let it
    /// [`close`](Self::close), and open again; else close this connection.
    pub fn open<T>(
        &mut self,
        hello: Hello,
        sessions: &mut Sessions<T>,
        conn: u64,
        now_us: u64,
    ) -> Result<[u8; WELCOME_LEN], OpenError>
    where
        T: AsRef<[SessionSlot]> + AsMut<[SessionSlot]>,
    {
        let opened = sessions.open(&hello, conn, now_us)?;
        // Resume after what was delivered: the writer re-sends from exactly there.
        let delivered = opened.delivered;
        self.state = State::Serving(Serving {
            opened,
            conn,
            hello,
            next_seq: hello.first_seq.max(delivered.saturating_add(1)),
            delivered,
            acked: delivered,
            bytes: 0,
            polled: delivered,
            quiet_since: now_us,
        });
        Ok(welcome(delivered))
    }

    /// Numbers the next message (a skipped oversize one too: it keeps its number). Hand it
    /// to the application, then call [`delivered`](Self::delivered) once its callback has
    /// returned. A message whose callback did not return (it panicked) must end the
    /// connection: the writer sends it again. `None` before the session is open.
    #[inline]
    pub fn on_message(&mut self) -> Option<Delivery> {
        let State::Serving(s) = &mut self.state else {
            return None;
        };
        let seq = s.next_seq;
        s.next_seq = seq.saturating_add(1);
        Some(Delivery {
            session: s.hello.session,
            seq,
            may_repeat: seq <= s.opened.doubt,
        })
    }

    /// The callback for `delivery` (a message of `len` bytes) returned: the message counts as
    /// delivered (and will be acknowledged). Returns `false`, changing nothing, unless it is
    /// the next one due.
    #[inline]
    pub fn delivered(&mut self, delivery: Delivery, len: usize) -> bool {
        match &mut self.state {
            State::Serving(s) if delivery.seq == s.delivered.saturating_add(1) => {
                s.delivered = delivery.seq;
                s.bytes = s.bytes.saturating_add(len as u64);
                true
            }
            _ => false,
        }
    }

    /// The acknowledgement due at `now_us`, if one is: at once after [`ACK_EVERY`] messages
    /// or [`ACK_BYTES`] bytes of them ([`with_ack_every`](Self::with_ack_every)), else once
    /// delivery has been quiet for the acknowledgement delay. Send it framed like a reply.
    /// Call it after every chunk of messages, and at [`ack_at`](Self::ack_at).
    pub fn poll_ack(&mut self, now_us: u64) -> Option<[u8; ACK_LEN]> {
        let State::Serving(s) = &mut self.state else {
            return None;
        };
        if s.delivered <= s.acked {
            return None;
        }
        if s.delivered != s.polled {
            s.polled = s.delivered;
            s.quiet_since = now_us;
        }
        let due = s.delivered - s.acked >= self.ack_every
            || s.bytes >= self.ack_bytes
            || now_us.saturating_sub(s.quiet_since) >= self.ack_delay_us;
        due.then(|| {
            s.acked = s.delivered;
            s.bytes = 0;
            ack(s.delivered)
        })
    }

    /// When an acknowledgement will be due if no more messages come (wait for data until
    /// then, then call [`poll_ack`](Self::poll_ack)); `None` when none is pending.
    pub fn ack_at(&self) -> Option<u64> {
        match &self.state {
            State::Serving(s) if s.delivered > s.acked => {
                Some(s.quiet_since.saturating_add(self.ack_delay_us))
            }
            _ => None,
        }
    }

    /// Every message up to this one was delivered (0 before the session is open).
    pub fn delivered_until(&self) -> u64 {
        match &self.state {
            State::Serving(s) => s.delivered,
            _ => 0,
        }
    }

    /// The hello, once the session is open.
    pub fn hello(&self) -> Option<Hello> {
        match &self.state {
            State::Serving(s) => Some(s.hello),
            _ => None,
        }
    }

    /// Whether the session is open.
    pub fn is_open(&self) -> bool {
        matches!(self.state, State::Serving(_))
    }

    /// The connection ends: its session goes back to `sessions`, delivered as far as it was,
    /// for the writer's next connection. Call it exactly when the transport stops reading
    /// this connection (and before opening the session for another).
    pub fn close<T>(&mut self, sessions: &mut Sessions<T>, now_us: u64)
    where
        T: AsRef<[SessionSlot]> + AsMut<[SessionSlot]>,
    {
        if let State::Serving(s) = self.state {
            sessions.release(&s.opened, s.conn, s.delivered, now_us);
        }
        self.state = State::Closed;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(first_seq: u64, resent_until: u64) -> Hello {
        Hello {
            session: SessionId([3; 16]),
            first_seq,
            resent_until,
        }
    }

    fn deliver(r: &mut Receiver, n: usize) -> alloc::vec::Vec<(u64, bool)> {
        deliver_sized(r, n, 1)
    }

    /// Delivers `n` messages of `len` bytes.
    fn deliver_sized(r: &mut Receiver, n: usize, len: usize) -> alloc::vec::Vec<(u64, bool)> {
        (0..n)
            .map(|_| {
                let d = r.on_message().unwrap();
                assert!(r.delivered(d, len));
                (d.seq, d.may_repeat)
            })
            .collect()
    }

    #[test]
    fn the_hello_is_judged_byte_by_byte() {
        let bytes = hello(1, 0).encode();
        let mut r = Receiver::new();
        assert_eq!(r.read_hello(&bytes[..20]), Ok((20, None)));
        assert!(r.is_mid_hello());
        let mut more = bytes[20..].to_vec();
        more.extend_from_slice(b"frames");
        assert_eq!(r.read_hello(&more), Ok((26, Some(hello(1, 0)))));
        assert_eq!(
            Receiver::new().read_hello(&[0, 0, 0, 5]),
            Err(WireError::NotAcked)
        );
    }

    #[test]
    fn an_unknown_session_marks_what_was_written_before_and_a_known_one_resumes() {
        let mut table = Sessions::new([SessionSlot::EMPTY; 2], 0);
        // A new listener gets a reconnect re-sending 5..=7.
        let mut a = Receiver::new();
        assert_eq!(a.open(hello(5, 7), &mut table, 1, 0), Ok(welcome(4)));
        assert_eq!(
            deliver(&mut a, 5),
            [(5, true), (6, true), (7, true), (8, false), (9, false)]
        );
        // The writer reconnects while `a` still holds the session: `a` must go first.
        let mut b = Receiver::new();
        assert_eq!(
            b.open(hello(7, 12), &mut table, 2, 1),
            Err(OpenError::Held { by: 1 })
        );
        a.close(&mut table, 2);
        // Known now: it resumes after 9, and nothing is marked.
        assert_eq!(b.open(hello(7, 12), &mut table, 2, 3), Ok(welcome(9)));
        assert_eq!(deliver(&mut b, 2), [(10, false), (11, false)]);
    }

    #[test]
    fn doubt_outlives_a_connection_that_delivered_nothing() {
        // A restarted listener learns the session from a hello re-sending 1..=3, and the
        // connection dies before a message arrives. On the next connection the session is
        // known, but 1..=3 may still have been delivered by the process before.
        let mut table = Sessions::new([SessionSlot::EMPTY; 1], 0);
        let mut a = Receiver::new();
        a.open(hello(1, 3), &mut table, 1, 0).unwrap();
        a.close(&mut table, 1);
        let mut b = Receiver::new();
        b.open(hello(1, 3), &mut table, 2, 2).unwrap();
        assert_eq!(
            deliver(&mut b, 4),
            [(1, true), (2, true), (3, true), (4, false)]
        );
    }

    #[test]
    fn acknowledgements_are_paced() {
        let mut table = Sessions::new([SessionSlot::EMPTY; 1], 0);
        let mut r = Receiver::new();
        r.open(hello(1, 0), &mut table, 1, 0).unwrap();
        assert_eq!(r.poll_ack(0), None);
        deliver(&mut r, 10);
        // Delivery just moved: wait for quiet.
        assert_eq!(r.poll_ack(100), None);
        assert_eq!(r.ack_at(), Some(100 + ACK_DELAY_US));
        assert_eq!(r.poll_ack(100 + ACK_DELAY_US), Some(ack(10)));
        assert_eq!(r.ack_at(), None);
        // A stream: every ACK_EVERY at once, whatever the time.
        deliver(&mut r, ACK_EVERY as usize);
        assert_eq!(r.poll_ack(700), Some(ack(10 + ACK_EVERY)));
        // A message whose callback did not return is never acknowledged, even beside ones
        // that were delivered after the last acknowledgement.
        deliver(&mut r, 3);
        let d = r.on_message().unwrap();
        assert_eq!(r.poll_ack(10_000), None); // quiet from now
        let later = 10_000 + ACK_DELAY_US;
        assert_eq!(r.poll_ack(later), Some(ack(13 + ACK_EVERY)));
        assert_eq!(r.poll_ack(later + ACK_DELAY_US), None);
        assert!(!r.delivered(
            Delivery {
                seq: d.seq + 1,
                ..d
            },
            1
        ));
    }

    #[test]
    fn large_messages_are_acknowledged_by_their_bytes() {
        let mut table = Sessions::new([SessionSlot::EMPTY; 1], 0);
        let mut r = Receiver::new();
        r.open(hello(1, 0), &mut table, 1, 0).unwrap();
        // 4 KiB messages: ACK_BYTES of them come long before ACK_EVERY.
        let per = (ACK_BYTES / 4096) as usize;
        deliver_sized(&mut r, per - 1, 4096);
        assert_eq!(r.poll_ack(1), None);
        deliver_sized(&mut r, 1, 4096);
        assert_eq!(r.poll_ack(2), Some(ack(per as u64)));
        // The count starts again from there.
        deliver_sized(&mut r, per - 1, 4096);
        assert_eq!(r.poll_ack(3), None);
        // Set lower, both bounds hold.
        let mut small = Receiver::new().with_ack_every(4, 1000);
        let mut table = Sessions::new([SessionSlot::EMPTY; 1], 0);
        small.open(hello(1, 0), &mut table, 1, 0).unwrap();
        deliver_sized(&mut small, 3, 1);
        assert_eq!(small.poll_ack(1), None);
        deliver_sized(&mut small, 1, 1);
        assert_eq!(small.poll_ack(2), Some(ack(4)));
        deliver_sized(&mut small, 1, 1000);
        assert_eq!(small.poll_ack(3), Some(ack(5)));
    }
}

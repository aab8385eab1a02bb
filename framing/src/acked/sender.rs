//! The writer's side of the acknowledged mode as a sans-io state machine: it numbers what the
//! application queues, keeps it in a [`Window`](super::Window) (or another [`Batches`] store)
//! until the listener acknowledges it, opens each connection with a hello, resumes exactly
//! where the listener's welcome says, and tells the transport what to write, what to give up
//! and when a connection has gone silent.

use core::fmt;
use core::marker::PhantomData;

use super::window::{Batch, Batches, QueueError};
use super::wire::{Back, HELLO_LEN, Hello, SessionId, WireError};
use crate::config::Config;
use crate::header::{Header, LengthPrefix};
use crate::walk::Frames;

/// The sender's time limits, in microseconds of the caller's clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SenderConfig {
    welcome_timeout_us: u64,
    silence_timeout_us: u64,
}

impl SenderConfig {
    /// A welcome within 5 s of the hello; an acknowledgement within 30 s while messages wait
    /// for one.
    pub const fn new() -> Self {
        Self {
            welcome_timeout_us: 5_000_000,
            silence_timeout_us: 30_000_000,
        }
    }

    /// How long a connection may wait for its welcome before it counts as broken (0: forever).
    pub const fn with_welcome_timeout_us(mut self, us: u64) -> Self {
        self.welcome_timeout_us = us;
        self
    }

    /// How long messages may wait for an acknowledgement, with none arriving, before the
    /// connection counts as broken (0: forever). The listener acknowledges once a message's
    /// callback has returned, so this also bounds how long its callback may take.
    pub const fn with_silence_timeout_us(mut self, us: u64) -> Self {
        self.silence_timeout_us = us;
        self
    }
}

impl Default for SenderConfig {
    fn default() -> Self {
        Self::new()
    }
}

/// What the listener did that the sender refuses: the connection must end (the messages stay
/// in the window and go again on the next one).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum SenderError {
    /// A listener-to-writer frame that is not one.
    Wire(WireError),
    /// The listener closed the connection before welcoming it: it does not speak the
    /// acknowledged mode, or it refused the session (no room, or a gap it cannot accept).
    Refused,
    /// An acknowledgement or reply before the welcome.
    BeforeWelcome,
    /// A second welcome on one connection.
    SecondWelcome,
    /// The welcome says the listener delivered fewer messages than the hello said were
    /// acknowledged, or more than this session has written.
    WelcomeOutOfRange {
        /// What the welcome said.
        delivered: u64,
        /// The last message acknowledged when the hello went out.
        acked: u64,
        /// The last message written so far.
        written: u64,
    },
    /// An acknowledgement of messages this session never wrote.
    AckOutOfRange {
        /// What the acknowledgement said.
        delivered: u64,
        /// The last message written so far.
        written: u64,
    },
}

impl fmt::Display for SenderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Wire(e) => write!(f, "{e}"),
            Self::Refused => f.write_str(
                "the listener closed the connection without a welcome: it does not speak the \
                 acknowledged mode, or refused the session",
            ),
            Self::BeforeWelcome => f.write_str("an acknowledgement or reply before the welcome"),
            Self::SecondWelcome => f.write_str("a second welcome on one connection"),
            Self::WelcomeOutOfRange {
                delivered,
                acked,
                written,
            } => write!(
                f,
                "the welcome says {delivered} delivered, outside {acked} acknowledged ..= {written} written"
            ),
            Self::AckOutOfRange { delivered, written } => write!(
                f,
                "an acknowledgement of {delivered} when only {written} were written"
            ),
        }
    }
}

impl core::error::Error for SenderError {}

impl From<WireError> for SenderError {
    fn from(e: WireError) -> Self {
        Self::Wire(e)
    }
}

/// A connection's number: frames are accepted only from the connection the sender opened
/// last (an older one's acknowledgements, arriving late, say nothing about where the new one
/// resumes).
pub type Epoch = u32;

/// A new connection: write `hello` first, then wait for the welcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Opening {
    /// Give it to [`Sender::on_back`] with every frame read from this connection.
    pub epoch: Epoch,
    /// The hello's bytes.
    pub hello: [u8; HELLO_LEN],
}

/// What a listener-to-writer frame meant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Received<'a> {
    /// The welcome: the connection is open. `resend` messages written on earlier connections
    /// and not delivered go again first ([`Sender::transmit`]).
    Welcome {
        /// Messages the welcome says were delivered that were not acknowledged before (they
        /// left the window).
        newly: u64,
        /// Messages to send again.
        resend: u64,
    },
    /// An acknowledgement: `newly` more messages are delivered (and left the window).
    Acked {
        /// Messages it acknowledged for the first time.
        newly: u64,
    },
    /// A reply of the listener's application.
    Reply(&'a [u8]),
    /// A frame of a connection opened before the current one: ignored.
    Stale,
}

/// Why a connection counts as broken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Broken {
    /// No welcome within the welcome timeout.
    NoWelcome,
    /// Messages waited for an acknowledgement for the silence timeout and none came.
    Silent,
}

/// The next byte to put on the connection: in `batch`, whose first message is `seq`, `skip`
/// bytes into its frames.
#[derive(Clone, Copy, Debug)]
struct Cursor {
    batch: Batch,
    seq: u64,
    skip: usize,
}

#[derive(Clone, Copy, Debug)]
enum Link {
    Down,
    Welcoming {
        first_seq: u64,
        since: u64,
    },
    Up {
        /// `None`: every queued byte went out; the next batch queued is next.
        cursor: Option<Cursor>,
        /// Since when messages have waited for an acknowledgement, if they do.
        waiting_since: Option<u64>,
    },
}

/// The acknowledged mode's sender: see the [module documentation](super) for how a transport
/// drives it. `H` is the messages' header format (the sender walks its own frames only when
/// a connection resumes inside a batch, and when messages are given up).
#[derive(Debug)]
pub struct Sender<H, W> {
    framing: Config,
    config: SenderConfig,
    window: W,
    session: SessionId,
    /// The number of the next message queued.
    next_seq: u64,
    /// Every message up to this one is acknowledged.
    acked: u64,
    /// The last message handed, even in part, to a connection of this session.
    written: u64,
    epoch: Epoch,
    link: Link,
    _format: PhantomData<fn() -> H>,
}

impl<H: LengthPrefix, W: Batches> Sender<H, W> {
    /// A sender for session `session` (16 random bytes, new for every writer), framing its
    /// messages with `framing` and keeping them in `window` until acknowledged (a
    /// [`Window`](super::Window) over caller storage, or another [`Batches`] store).
    pub fn new(framing: Config, config: SenderConfig, window: W, session: SessionId) -> Self {
        Self {
            framing,
            config,
            window,
            session,
            next_seq: 1,
            acked: 0,
            written: 0,
            epoch: 0,
            link: Link::Down,
            _format: PhantomData,
        }
    }

    /// The first message of the window's oldest batch.
    fn front_seq(&self) -> u64 {
        self.next_seq.saturating_sub(self.window.messages())
    }

    /// Starts a new connection (any earlier one is forgotten: its frames are
    /// [`Received::Stale`] from now on). Write the hello first, then read frames for the welcome.
    pub fn connect(&mut self, now_us: u64) -> Opening {
        self.epoch = self.epoch.wrapping_add(1);
        let hello = Hello {
            session: self.session,
            first_seq: self.acked.saturating_add(1),
            resent_until: self.written.max(self.acked),
        };
        self.link = Link::Welcoming {
            first_seq: hello.first_seq,
            since: now_us,
        };
        Opening {
            epoch: self.epoch,
            hello: hello.encode(),
        }
    }

    /// Connection `epoch` ended (closed, reset, or given up by the transport). Returns
    /// [`SenderError::Refused`] when it ended before its welcome.
    pub fn disconnected(&mut self, epoch: Epoch) -> Option<SenderError> {
        if epoch != self.epoch {
            return None;
        }
        let refused = matches!(self.link, Link::Welcoming { .. });
        self.link = Link::Down;
        refused.then_some(SenderError::Refused)
    }

    /// A frame's payload read from connection `epoch`.
    ///
    /// # Errors
    /// What the listener did wrong ([`SenderError`]): end the connection and open another.
    pub fn on_back<'a>(
        &mut self,
        epoch: Epoch,
        payload: &'a [u8],
        now_us: u64,
    ) -> Result<Received<'a>, SenderError> {
        let back = Back::parse(payload)?;
        if epoch != self.epoch {
            return Ok(Received::Stale);
        }
        match (self.link, back) {
            (Link::Down, _) => Ok(Received::Stale),
            (Link::Welcoming { first_seq, .. }, Back::Welcome { delivered, .. }) => {
                self.welcome(first_seq, delivered, now_us)
            }
            (Link::Welcoming { .. }, _) => Err(SenderError::BeforeWelcome),
            (Link::Up { .. }, Back::Welcome { .. }) => Err(SenderError::SecondWelcome),
            (Link::Up { .. }, Back::Ack { delivered }) => self.ack(delivered, now_us),
            (Link::Up { .. }, Back::Reply(reply)) => Ok(Received::Reply(reply)),
        }
    }

    fn welcome(
        &mut self,
        first_seq: u64,
        delivered: u64,
        now_us: u64,
    ) -> Result<Received<'static>, SenderError> {
        // The listener can neither have forgotten what it acknowledged nor have delivered
        // what was never written.
        let acked = first_seq.saturating_sub(1);
        let written = self.written.max(acked);
        if delivered < acked || delivered > written {
            return Err(SenderError::WelcomeOutOfRange {
                delivered,
                acked,
                written,
            });
        }
        let newly = delivered - self.acked.min(delivered);
        self.acknowledge(delivered);
        // Resume with message `delivered + 1`: the listener numbers this connection's
        // messages from there, and nothing that arrives on another connection moves it.
        let cursor = self.window.front().map(|batch| {
            let seq = self.front_seq();
            let skip = self.offset_of(&batch, delivered.saturating_add(1).saturating_sub(seq));
            Cursor { batch, seq, skip }
        });
        let resend = written - delivered;
        self.link = Link::Up {
            cursor,
            waiting_since: (resend > 0).then_some(now_us),
        };
        Ok(Received::Welcome { newly, resend })
    }

    fn ack(&mut self, delivered: u64, now_us: u64) -> Result<Received<'static>, SenderError> {
        if delivered > self.written {
            return Err(SenderError::AckOutOfRange {
                delivered,
                written: self.written,
            });
        }
        let newly = delivered.saturating_sub(self.acked);
        if newly > 0 {
            self.acknowledge(delivered);
            if let Link::Up { waiting_since, .. } = &mut self.link {
                *waiting_since = (self.acked < self.written).then_some(now_us);
            }
        }
        Ok(Received::Acked { newly })
    }

    /// Every message up to `delivered` is delivered: the batches it covers leave the window.
    fn acknowledge(&mut self, delivered: u64) {
        self.acked = self.acked.max(delivered);
        while let Some(front) = self.window.front() {
            let last = self.front_seq().saturating_add(u64::from(front.count)) - 1;
            if last > self.acked {
                break;
            }
            self.window.pop_front();
            // A cursor never points into what is acknowledged; should it, it moves on.
            if let Link::Up {
                cursor: Some(c), ..
            } = &mut self.link
                && c.batch.at == front.at
            {
                self.link = Link::Up {
                    cursor: self.window.front().map(|batch| Cursor {
                        batch,
                        seq: self.front_seq(),
                        skip: 0,
                    }),
                    waiting_since: None,
                };
            }
        }
    }

    /// Bytes of `batch`'s frames before its message number `index` (0: the first).
    fn offset_of(&self, batch: &Batch, index: u64) -> usize {
        if index == 0 {
            return 0;
        }
        let frames = self.window.frames(batch, 0);
        let mut walk = Frames::<H>::new(self.framing, frames);
        for _ in 0..index {
            if walk.next().is_none() {
                break;
            }
        }
        walk.offset()
    }

    /// Queues `frames` (`count` whole frames of format `H`) as one batch; its messages get
    /// the next numbers. Returns `true` when the connection is open and everything before
    /// went out: [`transmit`](Self::transmit) now returns exactly `frames`, so a transport
    /// that still has them may write its own copy and then call
    /// [`transmitted`](Self::transmitted).
    ///
    /// # Errors
    /// [`QueueError::Full`] until acknowledgements make room; [`QueueError::TooLarge`] for a
    /// batch the window can never hold.
    pub fn queue(&mut self, frames: &[u8], count: u32) -> Result<bool, QueueError> {
        let batch = self
            .window
            .push_with(frames.len(), count, |room| room.copy_from_slice(frames))?;
        Ok(self.queued(batch))
    }

    /// Queues a batch that `push` appends to the window itself, through its store's own
    /// means (transport-std hands a full send buffer over, with no copy): as
    /// [`queue`](Self::queue). `push` must append exactly one batch of whole frames of format
    /// `H` and return it (as the store's [`Batches::push_with`] does); an error leaves the
    /// sender as it was.
    ///
    /// # Errors
    /// What `push` returned.
    pub fn queue_in(
        &mut self,
        push: impl FnOnce(&mut W) -> Result<Batch, QueueError>,
    ) -> Result<bool, QueueError> {
        let batch = push(&mut self.window)?;
        Ok(self.queued(batch))
    }

    /// Queues one message, framed with `header` (from an [`Encoder`](crate::Encoder) of the
    /// same format): as [`queue_with`](Self::queue_with) with one frame.
    ///
    /// # Errors
    /// As [`queue`](Self::queue).
    #[inline]
    pub fn queue_message(&mut self, header: &Header, payload: &[u8]) -> Result<bool, QueueError> {
        let len = header.len().saturating_add(payload.len());
        self.queue_with(len, 1, |room| {
            let (h, p) = room.split_at_mut(header.len());
            h.copy_from_slice(header);
            p.copy_from_slice(payload);
        })
    }

    /// Queues a batch of `len` bytes, `count` whole frames of format `H`, that `fill` writes
    /// straight into the window (no buffer of the caller's in between): as
    /// [`queue`](Self::queue). `fill` must write exactly that: the frames are walked when a
    /// connection resumes inside the batch and when messages are given up.
    ///
    /// Queued while the newest batch has not gone out on the connection, the frames join it
    /// (up to an eighth of the window): a poll loop that writes many small messages between
    /// two polls then moves them with one copy and one record.
    ///
    /// # Errors
    /// As [`queue`](Self::queue).
    #[inline]
    pub fn queue_with(
        &mut self,
        len: usize,
        count: u32,
        fill: impl FnOnce(&mut [u8]),
    ) -> Result<bool, QueueError> {
        let mut fill = Some(fill);
        if self.tail_unsent() {
            let max = self.window.capacity() / 8;
            let grown = self.window.extend_tail_with(len, count, max, |room| {
                if let Some(f) = fill.take() {
                    f(room);
                }
            });
            if let Ok(batch) = grown {
                self.next_seq = self.next_seq.saturating_add(u64::from(count));
                if let Link::Up {
                    cursor: Some(c), ..
                } = &mut self.link
                    && c.batch.at == batch.at
                {
                    c.batch = batch;
                }
                return Ok(false);
            }
        }
        let batch = self.window.push_with(len, count, |room| {
            if let Some(f) = fill.take() {
                f(room);
            }
        })?;
        Ok(self.queued(batch))
    }

    /// Whether the newest batch has not gone out, even in part, on the current connection
    /// (with none open, it goes out whole on the next, so it may grow).
    #[inline]
    fn tail_unsent(&self) -> bool {
        let Some(tail) = self.window.tail() else {
            return false;
        };
        match self.link {
            Link::Up { cursor: None, .. } => false,
            Link::Up {
                cursor: Some(c), ..
            } => c.batch.at != tail.at || c.skip == 0,
            Link::Down | Link::Welcoming { .. } => true,
        }
    }

    fn queued(&mut self, batch: Batch) -> bool {
        let seq = self.next_seq;
        self.next_seq = self.next_seq.saturating_add(u64::from(batch.count));
        match &mut self.link {
            Link::Up { cursor, .. } if cursor.is_none() => {
                *cursor = Some(Cursor {
                    batch,
                    seq,
                    skip: 0,
                });
                true
            }
            _ => false,
        }
    }

    /// Whether a batch of `len` bytes and `count` messages would be queued now.
    pub fn has_room(&self, len: usize, count: u32) -> bool {
        self.window.has_room(len, count)
    }

    /// The next bytes to write on the connection (after its welcome): re-sent messages first,
    /// then new ones, one batch (or what is left of it) at a time. `None` when there is
    /// nothing to write, or no open connection.
    pub fn transmit(&self) -> Option<&[u8]> {
        match self.link {
            Link::Up {
                cursor: Some(c), ..
            } => Some(self.window.frames(&c.batch, c.skip)),
            _ => None,
        }
    }

    /// `n` bytes of what [`transmit`](Self::transmit) returned went to the socket.
    pub fn transmitted(&mut self, mut n: usize, now_us: u64) {
        let Link::Up {
            cursor: Some(mut c),
            mut waiting_since,
        } = self.link
        else {
            return;
        };
        let mut cursor = Some(c);
        while n > 0 {
            let left = c.batch.len.saturating_sub(c.skip);
            let took = n.min(left);
            n -= took;
            c.skip += took;
            // Written, even in part: a listener may have delivered it before a later hello.
            self.written = self
                .written
                .max(c.seq.saturating_add(u64::from(c.batch.count)) - 1);
            waiting_since.get_or_insert(now_us);
            if c.skip < c.batch.len {
                cursor = Some(c);
                break;
            }
            cursor = self.window.after(&c.batch).map(|batch| Cursor {
                batch,
                seq: c.seq.saturating_add(u64::from(c.batch.count)),
                skip: 0,
            });
            match cursor {
                Some(next) => c = next,
                None => break,
            }
        }
        self.link = Link::Up {
            cursor,
            waiting_since,
        };
    }

    /// Whether connection trouble is due at `now_us`: the welcome is late, or messages have
    /// waited too long for an acknowledgement. The transport then ends the connection
    /// ([`disconnected`](Self::disconnected)) and opens another.
    pub fn poll(&self, now_us: u64) -> Option<Broken> {
        let over = |since: u64, limit: u64| limit > 0 && now_us.saturating_sub(since) >= limit;
        match self.link {
            Link::Welcoming { since, .. } if over(since, self.config.welcome_timeout_us) => {
                Some(Broken::NoWelcome)
            }
            Link::Up {
                waiting_since: Some(since),
                ..
            } if over(since, self.config.silence_timeout_us) => Some(Broken::Silent),
            _ => None,
        }
    }

    /// When [`poll`](Self::poll) will next have something to say, if nothing else happens.
    pub fn poll_at(&self) -> Option<u64> {
        let at = |since: u64, limit: u64| (limit > 0).then(|| since.saturating_add(limit));
        match self.link {
            Link::Welcoming { since, .. } => at(since, self.config.welcome_timeout_us),
            Link::Up {
                waiting_since: Some(since),
                ..
            } => at(since, self.config.silence_timeout_us),
            _ => None,
        }
    }

    /// Gives up every message not acknowledged: hands each payload to `dead` (oldest first)
    /// and empties the window. If any was given up, what is queued next belongs to a new
    /// session, `next` (a listener that remembers the old one would see a gap), and the
    /// connection must be opened again ([`connect`](Self::connect)). Returns how many.
    pub fn give_up(&mut self, next: SessionId, mut dead: impl FnMut(&[u8])) -> u64 {
        let mut given = 0u64;
        let mut batch = self.window.front();
        let mut seq = self.front_seq();
        while let Some(b) = batch {
            let mut walk = Frames::<H>::new(self.framing, self.window.frames(&b, 0));
            for payload in walk.by_ref() {
                let Ok(payload) = payload else { break };
                if seq > self.acked {
                    dead(payload);
                    given += 1;
                }
                seq = seq.saturating_add(1);
            }
            batch = self.window.after(&b);
        }
        self.window.clear();
        if given > 0 {
            self.session = next;
            self.next_seq = 1;
            self.acked = 0;
            self.written = 0;
            self.link = Link::Down;
        } else {
            self.acked = self.next_seq.saturating_sub(1);
        }
        given
    }

    /// The session messages are numbered in.
    pub fn session(&self) -> SessionId {
        self.session
    }

    /// The current connection's epoch (the last [`connect`](Self::connect)'s).
    pub fn epoch(&self) -> Epoch {
        self.epoch
    }

    /// Whether the current connection has been welcomed (and not lost since).
    pub fn is_open(&self) -> bool {
        matches!(self.link, Link::Up { .. })
    }

    /// Whether a connection is open or opening (not lost, not given up).
    pub fn has_connection(&self) -> bool {
        !matches!(self.link, Link::Down)
    }

    /// Whether a connection is needed: none is open or opening, and messages wait in the
    /// window.
    pub fn needs_connection(&self) -> bool {
        matches!(self.link, Link::Down) && !self.window.is_empty()
    }

    /// The number the next message queued gets (in [`session`](Self::session)).
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Messages queued and not acknowledged.
    pub fn unacknowledged(&self) -> u64 {
        self.next_seq.saturating_sub(1).saturating_sub(self.acked)
    }

    /// Whether every message queued so far is acknowledged.
    pub fn is_settled(&self) -> bool {
        self.unacknowledged() == 0
    }

    /// Every message up to this one is acknowledged.
    pub fn acked(&self) -> u64 {
        self.acked
    }

    /// The last message handed, even in part, to a connection.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// The window.
    pub fn window(&self) -> &W {
        &self.window
    }
}

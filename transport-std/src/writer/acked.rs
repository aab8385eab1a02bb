//! The writer's side of the acknowledged mode, driven from framing's sans-io [`Sender`]: this
//! file moves bytes, waits and locks; the protocol (numbering, the window, where a connection
//! resumes, what is given up, when a silent connection counts as broken) is the machine's.
//!
//! The machine sits behind a mutex that is never held across socket I/O: a writing thread
//! queues its batch and, when the connection is caught up, writes its own copy of it; the
//! reply thread feeds what the listener sends back. The connection itself (`Link`) has its
//! own lock, which serialises the writing threads as in the plain mode.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use buffstreams_framing::acked::{
    Batches, Epoch, QueueError, Received, Sender, SenderConfig, SessionId,
};
use buffstreams_framing::{Encoder, Frames, LengthPrefix, MAX_HEADER_LEN};

use super::config::{ReplyFn, WindowFull, WriterConfig};
use super::held::{Chunk, Held, Spares};
use super::io::write_counting;
use super::lane::{LANE_CAP, Waker};
use super::replies::Back;
use super::{Link, Shared};
use crate::error::Error;
use crate::stats::{WriterCounters, add};
use crate::sync::relock;

/// The acknowledged mode's state, shared by the writing threads and the reply threads.
pub(super) struct Acked<H> {
    sender: Mutex<Sender<H, Held>>,
    /// Signalled when acknowledgements free room, or a connection ends.
    changed: Condvar,
    /// Zero of the machine's clock.
    zero: Instant,
    /// Mirrors of the window for `WindowFull::Error`'s check at `write`, without the lock.
    messages: AtomicU64,
    bytes: AtomicUsize,
    /// The retry policy's budget, for the whole writer: connections lost, refused or silent
    /// since acknowledgements last made progress (when the first was, and how many).
    trouble: Mutex<Option<(Instant, u32)>>,
    /// Buffers of acknowledged batches, for the lanes to continue in.
    spares: Arc<Spares>,
}

/// A random session identity.
fn new_session() -> SessionId {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&fastrand::u64(..).to_be_bytes());
    id[8..].copy_from_slice(&fastrand::u64(..).to_be_bytes());
    SessionId(id)
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl<H: LengthPrefix> Acked<H> {
    /// The mode's state for a writer whose lanes' buffers are `lane` bytes.
    pub(super) fn new(config: &WriterConfig, lane: usize) -> Self {
        let (bytes, messages) = match config.window_full() {
            // At least one lane's batch, and the largest message, must fit an empty window.
            WindowFull::Block => {
                let (bytes, messages) = config.ack_window();
                let largest = Encoder::<H>::new(config.framing())
                    .max_frame_len()
                    .min(64 << 20)
                    .saturating_add(MAX_HEADER_LEN);
                (bytes.max(LANE_CAP.max(largest)), messages)
            }
            // Bounded at `write`, by the mirrors: never refuse what `write` accepted.
            WindowFull::Error => (usize::MAX, u64::MAX),
        };
        let timeouts = SenderConfig::new()
            .with_welcome_timeout_us(micros(config.connect_timeout()))
            .with_silence_timeout_us(config.write_timeout().map_or(0, micros));
        let bound = bytes.min(config.ack_window().0.max(LANE_CAP));
        let spares = Arc::new(Spares::new(lane, bound));
        Self {
            sender: Mutex::new(Sender::new(
                config.framing(),
                timeouts,
                Held::new(bytes, messages, spares.clone()),
                new_session(),
            )),
            spares,
            changed: Condvar::new(),
            zero: Instant::now(),
            messages: AtomicU64::new(0),
            bytes: AtomicUsize::new(0),
            trouble: Mutex::new(None),
        }
    }

    /// The budget so far: since when, and how many failures (`(now, 0)` without trouble).
    fn budget(&self) -> (Instant, u32) {
        relock(&self.trouble).unwrap_or((Instant::now(), 0))
    }

    /// Stores the budget after a reconnection attempt counted `failures` in it.
    fn set_budget(&self, started: Instant, failures: u32) {
        *relock(&self.trouble) = (failures > 0).then_some((started, failures));
    }

    /// A connection was lost (or refused, or silent): one more failure.
    fn trouble(&self) {
        let mut t = relock(&self.trouble);
        let (_, failures) = t.get_or_insert((Instant::now(), 0));
        *failures = failures.saturating_add(1);
    }

    /// Acknowledgements made progress (or the window was given up): the budget renews.
    fn progress(&self) {
        *relock(&self.trouble) = None;
    }

    /// The machine's clock: microseconds since the writer was made.
    pub(super) fn now_us(&self) -> u64 {
        micros(self.zero.elapsed())
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Sender<H, Held>> {
        relock(&self.sender)
    }

    /// After a change of the window: the mirrors, and the threads waiting for room.
    fn changed(&self, s: &Sender<H, Held>) {
        self.messages.store(s.unacknowledged(), Relaxed);
        self.bytes.store(s.window().frame_bytes(), Relaxed);
        self.changed.notify_all();
    }

    /// Whether the window is full (`WindowFull::Error`'s check, before queueing).
    pub(super) fn full(&self, (bytes, messages): (usize, u64)) -> bool {
        self.bytes.load(Relaxed) >= bytes || self.messages.load(Relaxed) >= messages
    }

    /// Queues a batch of `count` frames, a copy of `batch`. `Ok(true)`: the connection is
    /// caught up and the batch is marked sent: write it now, from the caller's copy.
    fn queue(&self, batch: &[u8], count: u32) -> Result<bool, QueueError> {
        self.queue_in(batch.len(), |s| s.queue(batch, count))
    }

    /// Queues frames `range` of `chunk`, `count` of them, keeping the buffer (no copy); as
    /// [`queue`](Self::queue).
    fn queue_chunk(
        &self,
        chunk: &Chunk,
        range: Range<usize>,
        count: u32,
    ) -> Result<bool, QueueError> {
        let len = range.len();
        self.queue_in(len, |s| {
            s.queue_in(|w| w.push_chunk(chunk.clone(), range, count))
        })
    }

    /// Queues a batch of `len` bytes with `queue`.
    fn queue_in(
        &self,
        len: usize,
        queue: impl FnOnce(&mut Sender<H, Held>) -> Result<bool, QueueError>,
    ) -> Result<bool, QueueError> {
        let mut s = self.lock();
        let direct = queue(&mut s)?;
        if direct {
            // Before the write: an acknowledgement that races it must find it sent.
            s.transmitted(len, self.now_us());
        }
        self.changed(&s);
        Ok(direct)
    }

    /// A buffer of `len` bytes for a full lane to continue in.
    pub(super) fn spare(&self, len: usize) -> Box<[u8]> {
        self.spares.take(len)
    }

    /// Whatever the machine has to send on the connection now (re-sent messages, or batches
    /// queued while it was not caught up), marked sent.
    pub(super) fn take_pending(&self) -> Vec<u8> {
        let mut s = self.lock();
        let mut out = Vec::new();
        let now = self.now_us();
        while let Some(bytes) = s.transmit() {
            out.extend_from_slice(bytes);
            let n = bytes.len();
            s.transmitted(n, now);
        }
        out
    }

    /// Connection `epoch` is gone: if it was the current one, that is one more failure.
    pub(super) fn disconnected(&self, epoch: Epoch) {
        let mut s = self.lock();
        let lost = s.epoch() == epoch && s.has_connection();
        let _ = s.disconnected(epoch);
        self.changed(&s);
        drop(s);
        if lost {
            self.trouble();
        }
    }

    /// Whether a connection must be opened: none is open and messages wait.
    pub(super) fn needs_connection(&self) -> bool {
        self.lock().needs_connection()
    }

    fn is_open(&self) -> bool {
        self.lock().is_open()
    }

    /// Whether every message written so far is acknowledged.
    pub(super) fn settled(&self) -> bool {
        self.lock().is_settled()
    }

    /// Gives up every unacknowledged message: their payloads, oldest first. What comes next
    /// is a new session.
    fn give_up(&self) -> Vec<Vec<u8>> {
        let mut s = self.lock();
        let mut dead = Vec::new();
        s.give_up(new_session(), |payload| dead.push(payload.to_vec()));
        self.changed(&s);
        drop(s);
        self.progress();
        dead
    }

    /// Waits up to `wait` for a change of the window (an acknowledgement, a connection lost).
    fn wait(&self, wait: Duration) {
        let s = self.lock();
        let _ = self.changed.wait_timeout(s, wait);
    }
}

/// A reply thread's part in the acknowledged mode: what the listener sends back on
/// connection `epoch` goes to the machine.
pub(super) struct AckReader<H> {
    pub(super) acked: Arc<Acked<H>>,
    pub(super) epoch: Epoch,
    pub(super) counters: Arc<WriterCounters>,
    pub(super) on_reply: Option<Arc<ReplyFn>>,
    /// The flusher, woken when the connection ends: it re-sends what was not acknowledged.
    pub(super) flusher: Arc<Waker>,
    pub(super) idle_every: Option<Duration>,
}

impl<H: LengthPrefix + Send + 'static> Back for AckReader<H> {
    fn frame(&mut self, payload: &[u8]) -> bool {
        let mut s = self.acked.lock();
        let received = s.on_back(self.epoch, payload, self.acked.now_us());
        match received {
            Ok(Received::Acked { newly }) => {
                add(&self.counters.acked, newly);
                self.acked.changed(&s);
                drop(s);
                if newly > 0 {
                    self.acked.progress();
                }
                true
            }
            Ok(Received::Reply(reply)) => {
                drop(s);
                add(&self.counters.replies, 1);
                add(&self.counters.reply_bytes, reply.len() as u64);
                if let Some(f) = &self.on_reply {
                    f(reply);
                }
                true
            }
            Ok(_) => true,
            Err(e) => {
                log::warn!("writer: {e}");
                false
            }
        }
    }

    fn idle_every(&self) -> Option<Duration> {
        self.idle_every
    }

    fn idle(&mut self) -> bool {
        let silent = {
            let s = self.acked.lock();
            s.epoch() == self.epoch && s.poll(self.acked.now_us()).is_some()
        };
        if !silent {
            return true;
        }
        log::warn!("writer: no acknowledgement within the write timeout; reconnecting");
        self.acked.disconnected(self.epoch);
        false
    }

    fn ended(&mut self) {
        self.acked.disconnected(self.epoch);
        self.flusher.wake();
    }
}

impl<H: LengthPrefix + Send + 'static> Shared<H> {
    /// The acknowledged mode's `send`: a copy of the batch joins the window (waiting for room
    /// under `WindowFull::Block`) and goes out; after a broken connection the machine says
    /// what goes again on the next one.
    pub(super) fn send_acked(&self, acked: &Arc<Acked<H>>, batch: &[u8], count: u32) {
        self.send_into_window(acked, batch, count, |a| a.queue(batch, count));
    }

    /// A full lane's buffer, whose frames `range` (`count` of them) are to be sent: as
    /// [`send_acked`](Self::send_acked), the buffer itself kept in the window until they are
    /// acknowledged, then a spare for the lanes.
    pub(super) fn hand_over(
        &self,
        acked: &Arc<Acked<H>>,
        buf: Box<[u8]>,
        range: Range<usize>,
        count: u32,
    ) {
        let chunk: Chunk = Arc::new(buf);
        let Some(batch) = chunk.get(range.clone()) else {
            return;
        };
        self.send_into_window(acked, batch, count, |a| {
            a.queue_chunk(&chunk, range.clone(), count)
        });
    }

    /// `batch` (`count` frames) joins the window through `queue` and goes out.
    fn send_into_window(
        &self,
        acked: &Arc<Acked<H>>,
        batch: &[u8],
        count: u32,
        mut queue: impl FnMut(&Acked<H>) -> Result<bool, QueueError>,
    ) {
        let mut link = relock(&self.conn);
        let mut waited = false;
        let direct = loop {
            match queue(acked) {
                Ok(direct) => break direct,
                Err(QueueError::Full) => {
                    if !waited {
                        waited = true;
                        add(&self.counters.window_waits, 1);
                    }
                    // Waiting with the connection kept open: it is where room comes from.
                    if !acked.is_open() && !self.reopen(acked, &mut link, Some(batch)) {
                        return;
                    }
                    acked.wait(Duration::from_millis(50));
                }
                Err(_) if count > 1 => return self.send_in_pieces(acked, batch),
                Err(e) => {
                    // Only with a window smaller than the framing allows (WindowFull::Block
                    // makes it large enough); kept from vanishing all the same.
                    let n = self.dead_letter(batch);
                    self.note(
                        log::Level::Error,
                        format_args!("{e}: {n} messages dead-lettered"),
                    );
                    return;
                }
            }
        };
        if direct && let Some(stream) = link.stream.as_mut() {
            let (written, result) = write_counting(stream, batch);
            add(&self.counters.bytes_out, written as u64);
            match result {
                Ok(()) => {
                    add(&self.counters.batches, 1);
                    return;
                }
                Err(e) => self.write_failed(acked, &mut link, written, &e),
            }
        }
        self.catch_up(acked, &mut link);
    }

    /// A batch larger than the whole window: queued a frame at a time (a rare path, so the
    /// walk over its frames costs nothing that matters).
    fn send_in_pieces(&self, acked: &Arc<Acked<H>>, batch: &[u8]) {
        let mut walk = Frames::<H>::new(self.config.framing(), batch);
        let mut from = 0;
        while let Some(Ok(_)) = walk.next() {
            let to = walk.offset();
            if let Some(frame) = batch.get(from..to) {
                self.send_acked(acked, frame, 1);
            }
            from = to;
        }
    }

    /// Makes sure a connection is open and everything the machine has to send went out on
    /// it; gives up (dead letters) once the retry policy's budget is spent.
    fn catch_up(&self, acked: &Arc<Acked<H>>, link: &mut Link) {
        loop {
            if (!acked.is_open() || link.stream.is_none()) && !self.reopen(acked, link, None) {
                return;
            }
            let pending = acked.take_pending();
            let Some(stream) = link.stream.as_mut() else {
                continue;
            };
            if pending.is_empty() {
                return;
            }
            let (written, result) = write_counting(stream, &pending);
            add(&self.counters.bytes_out, written as u64);
            match result {
                Ok(()) => {
                    add(&self.counters.batches, 1);
                    return;
                }
                Err(e) => self.write_failed(acked, link, written, &e),
            }
        }
    }

    /// A write on an open connection failed: the connection ends (a failure in the budget).
    fn write_failed(&self, acked: &Acked<H>, link: &mut Link, written: usize, e: &std::io::Error) {
        add(&self.counters.io_errors, 1);
        self.note(
            log::Level::Warn,
            format_args!("write failed after {written} bytes: {e}"),
        );
        self.drop_link(acked, link);
    }

    /// Opens a new connection (the handshake re-sends what the welcome says) within the
    /// writer's budget: connections lost, refused or silent since acknowledgements last made
    /// progress count against the retry policy, with its backoff between them; `false` once
    /// it is spent, after giving up (the window, and `unqueued` if given, dead-lettered).
    fn reopen(&self, acked: &Arc<Acked<H>>, link: &mut Link, unqueued: Option<&[u8]>) -> bool {
        let (started, mut failures) = acked.budget();
        let spent = failures > 0 && self.out_of_budget(started, failures);
        if !spent && failures > 0 {
            self.back_off(started, failures, format_args!("connection lost"));
        }
        let opened = if spent {
            Err(Error::Io(std::io::ErrorKind::TimedOut.into()))
        } else {
            self.connect_acked(acked, link, started, &mut failures)
        };
        acked.set_budget(started, failures);
        match opened {
            Ok(()) => {
                add(&self.counters.reconnects, 1);
                true
            }
            Err(e) => {
                let mut n = self.give_up(acked, link);
                if let Some(batch) = unqueued {
                    n += self.dead_letter(batch);
                }
                let why = if spent {
                    format!("{failures} connections lost without progress")
                } else {
                    e.to_string()
                };
                self.note(
                    log::Level::Error,
                    format_args!(
                        "cannot reconnect ({why}); {n} unacknowledged messages dead-lettered"
                    ),
                );
                false
            }
        }
    }

    /// Ends the connection in `link`, for the machine too.
    pub(super) fn drop_link(&self, acked: &Acked<H>, link: &mut Link) {
        if let Some(old) = link.stream.take() {
            old.shutdown();
        }
        acked.disconnected(link.epoch);
    }

    /// Every unacknowledged message to the dead letters; the connection belonged to the old
    /// session, so it ends. Returns how many.
    fn give_up(&self, acked: &Acked<H>, link: &mut Link) -> u64 {
        let dead = acked.give_up();
        let n = dead.len() as u64;
        if n > 0 {
            relock(&self.dead).extend(dead);
            self.dead_lettered(n);
            self.drop_link(acked, link);
            acked.progress();
        }
        n
    }

    /// The flusher's part: a connection that ended with messages unacknowledged while nothing
    /// is being written is replaced at once, and the messages re-sent (or, beyond the retry
    /// policy, dead-lettered).
    pub(super) fn resume(&self, acked: &Arc<Acked<H>>) {
        if !acked.needs_connection() {
            return;
        }
        let mut link = relock(&self.conn);
        if acked.needs_connection() {
            self.catch_up(acked, &mut link);
        }
    }

    /// At `close`: waits up to `wait` for every message to be acknowledged, reconnecting and
    /// re-sending if the connection ends first; what is still unacknowledged then goes to the
    /// dead letters.
    pub(super) fn settle(&self, acked: &Arc<Acked<H>>, wait: Duration) {
        let deadline = Instant::now() + wait;
        while !acked.settled() && Instant::now() < deadline {
            if acked.needs_connection() {
                let mut link = relock(&self.conn);
                self.catch_up(acked, &mut link);
            }
            acked.wait(
                Duration::from_millis(50).min(deadline.saturating_duration_since(Instant::now())),
            );
        }
        let mut link = relock(&self.conn);
        let n = self.give_up(acked, &mut link);
        if n > 0 {
            self.note(
                log::Level::Warn,
                format_args!("closing with {n} messages unacknowledged; dead-lettered"),
            );
        }
    }
}

//! The writer's side of the acknowledged mode: the window of messages sent and not yet
//! acknowledged (in wire order, so that their numbers are their positions), sending into it,
//! and re-sending or giving up after a connection ends (opening one is in `handshake.rs`).

use std::collections::VecDeque;
use std::net::Shutdown;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use buffstreams_framing::acked::{HandshakeError, Hello, SessionId};
use buffstreams_framing::{Config, Frames, LengthPrefix};

use super::Shared;
use super::config::WindowFull;
use crate::stats::{WriterCounters, add};
use crate::sync::relock;

/// Buffers kept for reuse.
const SPARE: usize = 16;

/// A batch written and not yet wholly acknowledged.
struct Sent {
    first_seq: u64,
    frames: u64,
    bytes: Vec<u8>,
}

struct State {
    /// The session: new after messages were given up, so that numbers never leave a gap.
    session: SessionId,
    ring: VecDeque<Sent>,
    /// Bytes in `ring`.
    bytes: usize,
    /// The number of the next message to go on the wire.
    next_seq: u64,
    /// Every message up to this one is acknowledged.
    acked: u64,
    /// The last message handed, even in part, to a socket.
    attempted: u64,
    /// The connection in use, and whether its reply thread saw it end.
    generation: u64,
    broken: bool,
    /// Buffers of acknowledged batches, for the next ones (no allocation per batch).
    spare: Vec<Vec<u8>>,
}

/// The acknowledged mode's state, shared by the sending threads and the reply threads.
pub(super) struct Acks {
    state: Mutex<State>,
    /// Signalled when acknowledgements free room, or a connection ends.
    changed: Condvar,
    /// Mirrors for `WindowFull::Error`'s check without the lock.
    bytes: AtomicUsize,
    messages: AtomicU64,
}

impl Acks {
    pub(super) fn new() -> Self {
        Self {
            state: Mutex::new(State {
                session: new_session(),
                ring: VecDeque::new(),
                bytes: 0,
                next_seq: 1,
                acked: 0,
                attempted: 0,
                generation: 0,
                broken: false,
                spare: Vec::new(),
            }),
            changed: Condvar::new(),
            bytes: AtomicUsize::new(0),
            messages: AtomicU64::new(0),
        }
    }

    /// Whether the window is full (for `WindowFull::Error`, before queueing).
    pub(super) fn full(&self, (bytes, messages): (usize, u64)) -> bool {
        self.bytes.load(Relaxed) >= bytes || self.messages.load(Relaxed) >= messages
    }

    fn mirror(&self, st: &State) {
        self.bytes.store(st.bytes, Relaxed);
        self.messages.store(st.next_seq - 1 - st.acked, Relaxed);
    }

    /// Every message up to `delivered` is acknowledged: drops what it covers.
    ///
    /// # Errors
    /// `delivered` is beyond what was sent: the listener is not telling the truth.
    pub(super) fn acknowledged(
        &self,
        session: SessionId,
        delivered: u64,
        counters: &WriterCounters,
    ) -> Result<(), HandshakeError> {
        let mut st = relock(&self.state);
        if session != st.session {
            // A late ack of a session given up since: it says nothing about the new one.
            return Ok(());
        }
        if delivered >= st.next_seq {
            return Err(HandshakeError::BadSequence);
        }
        if delivered <= st.acked {
            return Ok(());
        }
        add(&counters.acked, delivered - st.acked);
        st.acked = delivered;
        while let Some(front) = st.ring.front() {
            if front.first_seq + front.frames - 1 > delivered {
                break;
            }
            st.bytes -= front.bytes.len();
            if let Some(sent) = st.ring.pop_front()
                && st.spare.len() < SPARE
            {
                st.spare.push(sent.bytes);
            }
        }
        self.mirror(&st);
        drop(st);
        self.changed.notify_all();
        Ok(())
    }

    /// The reply thread of connection `generation` saw it end.
    pub(super) fn broken(&self, generation: u64) {
        let mut st = relock(&self.state);
        if st.generation == generation {
            st.broken = true;
        }
        drop(st);
        self.changed.notify_all();
    }

    /// Whether the connection in use ended with messages unacknowledged: they must be re-sent
    /// on a new one (the flusher does, when no write comes to do it).
    pub(super) fn stranded(&self) -> bool {
        let st = relock(&self.state);
        st.broken && st.acked + 1 != st.next_seq
    }

    /// Whether every message written so far is acknowledged.
    pub(super) fn settled(&self) -> bool {
        let st = relock(&self.state);
        st.acked + 1 == st.next_seq
    }

    /// Waits up to `wait` for every message written so far to be acknowledged.
    pub(super) fn wait_settled(&self, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        let mut st = relock(&self.state);
        while st.acked + 1 != st.next_seq {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || st.broken {
                return false;
            }
            st = self
                .changed
                .wait_timeout(st, left.min(Duration::from_millis(50)))
                .map_or_else(|e| e.into_inner().0, |(g, _)| g);
        }
        true
    }

    /// The hello of a new connection: the session, resuming after the last acknowledgement.
    pub(super) fn hello(&self) -> Hello {
        let st = relock(&self.state);
        Hello {
            session: st.session,
            first_seq: st.acked + 1,
            resent_until: st.attempted,
        }
    }

    /// A new connection is in use: its number.
    pub(super) fn connected(&self) -> u64 {
        let mut st = relock(&self.state);
        st.generation += 1;
        st.broken = false;
        st.generation
    }

    /// Every message not acknowledged, framed, in order (kept), and how many there are.
    pub(super) fn window<H: LengthPrefix>(&self, framing: Config) -> (Vec<u8>, u64) {
        let st = relock(&self.state);
        (unacked::<H>(&st, framing), st.next_seq - 1 - st.acked)
    }

    /// Every message not acknowledged, framed, in order, and forgets them (they are given up).
    /// What comes next starts a new session: the listener may remember the old one, and
    /// would take the next numbers for a gap.
    pub(super) fn give_up<H: LengthPrefix>(&self, framing: Config) -> Vec<u8> {
        let mut st = relock(&self.state);
        let out = unacked::<H>(&st, framing);
        st.ring.clear();
        st.bytes = 0;
        if !out.is_empty() {
            st.session = new_session();
            st.next_seq = 1;
            st.attempted = 0;
        }
        st.acked = st.next_seq - 1;
        self.mirror(&st);
        drop(st);
        self.changed.notify_all();
        out
    }
}

impl<H: LengthPrefix> Shared<H> {
    /// The flusher's part: a connection that ended with messages unacknowledged while nothing
    /// is being written is replaced at once, and the messages re-sent (or, beyond the retry
    /// policy, dead-lettered).
    pub(super) fn resume(&self, acks: &Arc<Acks>) {
        if !acks.stranded() {
            return;
        }
        let mut link = relock(&self.conn);
        if !acks.stranded() {
            return; // a sending thread got there first
        }
        if let Some(old) = link.stream.take() {
            let _ = old.shutdown(Shutdown::Both);
        }
        let mut failures = 0;
        match self.connect_acked(acks, &mut link, Instant::now(), &mut failures) {
            Ok(()) => add(&self.counters.reconnects, 1),
            Err(e) => {
                let lost = acks.give_up::<H>(self.config.framing());
                let n = self.dead_letter(&lost);
                self.note(
                    log::Level::Error,
                    format_args!(
                        "cannot reconnect ({e}); {n} unacknowledged messages dead-lettered"
                    ),
                );
            }
        }
    }

    /// At `close`: waits up to `wait` for every message to be acknowledged, reconnecting and
    /// re-sending if the connection ends first; what is still unacknowledged then goes to the
    /// dead letters.
    pub(super) fn settle(&self, acks: &Arc<Acks>, wait: Duration) {
        let deadline = Instant::now() + wait;
        while !acks.wait_settled(deadline.saturating_duration_since(Instant::now()))
            && Instant::now() < deadline
        {
            let mut link = relock(&self.conn);
            if let Some(old) = link.stream.take() {
                let _ = old.shutdown(Shutdown::Both);
            }
            let mut failures = 0;
            if self
                .connect_acked(acks, &mut link, Instant::now(), &mut failures)
                .is_err()
            {
                break;
            }
        }
        if acks.settled() {
            return;
        }
        let lost = acks.give_up::<H>(self.config.framing());
        let n = self.dead_letter(&lost);
        self.note(
            log::Level::Warn,
            format_args!("closing with {n} messages unacknowledged; dead-lettered"),
        );
    }
}

/// A random session identity.
fn new_session() -> SessionId {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&fastrand::u64(..).to_be_bytes());
    id[8..].copy_from_slice(&fastrand::u64(..).to_be_bytes());
    SessionId(id)
}

/// The bytes of every message after `st.acked`, in order.
fn unacked<H: LengthPrefix>(st: &State, framing: Config) -> Vec<u8> {
    let mut out = Vec::with_capacity(st.bytes);
    for sent in &st.ring {
        let skip = st.acked.saturating_sub(sent.first_seq - 1).min(sent.frames);
        let from = if skip == 0 {
            0
        } else {
            let mut walk = Frames::<H>::new(framing, &sent.bytes);
            for _ in 0..skip {
                walk.next();
            }
            walk.offset()
        };
        out.extend_from_slice(sent.bytes.get(from..).unwrap_or_default());
    }
    out
}

impl<H: LengthPrefix> Shared<H> {
    /// The acknowledged mode's `send`: the batch joins the window (waiting for room under
    /// `WindowFull::Block`), goes out, and after a broken connection the whole window is
    /// re-sent on the next one.
    pub(super) fn send_acked(&self, acks: &Arc<Acks>, batch: &[u8]) {
        let frames = Frames::<H>::new(self.config.framing(), batch).count() as u64;
        let mut link = relock(&self.conn);
        let link = &mut *link;
        let started = Instant::now();
        let mut failures = 0u32;
        let mut queued = false;
        let mut waited = false;
        let mut quiet_since = Instant::now();
        loop {
            let broken = {
                let st = relock(&acks.state);
                st.broken && st.generation == link.generation
            };
            if link.stream.is_none() || broken {
                if let Some(old) = link.stream.take() {
                    let _ = old.shutdown(Shutdown::Both);
                    self.note(
                        log::Level::Info,
                        format_args!("connection lost, reconnecting"),
                    );
                }
                match self.connect_acked(acks, link, started, &mut failures) {
                    Ok(()) => {
                        add(&self.counters.reconnects, 1);
                        if queued {
                            // The window, this batch included, went out on the new connection.
                            link.last_batch = Instant::now();
                            return;
                        }
                    }
                    Err(e) => {
                        let mut lost = acks.give_up::<H>(self.config.framing());
                        if !queued {
                            lost.extend_from_slice(batch);
                        }
                        let n = self.dead_letter(&lost);
                        self.note(
                            log::Level::Error,
                            format_args!(
                                "cannot reconnect ({e}); {n} unacknowledged messages dead-lettered"
                            ),
                        );
                        return;
                    }
                }
            }
            if !queued {
                let mut st = relock(&acks.state);
                let (max_bytes, max_messages) = self.config.ack_window();
                let in_flight = st.next_seq - 1 - st.acked;
                let room = st.ring.is_empty()
                    || self.config.window_full() == WindowFull::Error
                    || (st.bytes + batch.len() <= max_bytes && in_flight + frames <= max_messages);
                if !room {
                    if !waited {
                        waited = true;
                        add(&self.counters.window_waits, 1);
                    }
                    let acked = st.acked;
                    st = acks
                        .changed
                        .wait_timeout(st, Duration::from_millis(50))
                        .map_or_else(|e| e.into_inner().0, |(g, _)| g);
                    if st.acked != acked {
                        quiet_since = Instant::now();
                    } else if self
                        .config
                        .write_timeout()
                        .is_some_and(|t| quiet_since.elapsed() >= t)
                    {
                        // Nothing acknowledged for the write timeout: take it for broken.
                        drop(st);
                        link.stream = None;
                        quiet_since = Instant::now();
                    }
                    continue;
                }
                let first_seq = st.next_seq;
                st.next_seq += frames;
                st.bytes += batch.len();
                st.attempted = st.next_seq - 1;
                let mut bytes = st.spare.pop().unwrap_or_default();
                bytes.clear();
                bytes.extend_from_slice(batch);
                st.ring.push_back(Sent {
                    first_seq,
                    frames,
                    bytes,
                });
                acks.mirror(&st);
                queued = true;
            }
            let Some(stream) = link.stream.as_mut() else {
                continue;
            };
            let (written, result) = super::socket::write_counting(stream, batch);
            add(&self.counters.bytes_out, written as u64);
            match result {
                Ok(()) => {
                    add(&self.counters.batches, 1);
                    link.last_batch = Instant::now();
                    return;
                }
                Err(e) => {
                    add(&self.counters.io_errors, 1);
                    self.note(
                        log::Level::Warn,
                        format_args!("write failed after {written} bytes: {e}"),
                    );
                    if let Some(old) = link.stream.take() {
                        let _ = old.shutdown(Shutdown::Both);
                    }
                    failures += 1;
                }
            }
        }
    }
}

//! The listener's side of the acknowledged mode, driven from framing's sans-io machines: a
//! connection's [`Receiver`] and the [`Sessions`] table its connections share. This file only
//! moves what the machines say between threads; the protocol is theirs.

use std::time::{Duration, Instant};

use buffstreams_framing::acked::{ACK_LEN, Delivery, OpenError, Receiver, WELCOME_LEN, WireError};

use super::shared::Shared;
use crate::sync::relock;

/// Why a connection was refused at its opening.
#[derive(Debug)]
pub(super) enum Refusal {
    /// It did not open with a hello of this version.
    Wire(WireError),
    /// Its session could not be opened.
    Open(OpenError),
}

impl Refusal {
    /// Whether the hello was a late one, older than a connection that serves or served its
    /// session: the writer has moved on (not a protocol error).
    pub(super) fn is_stale(&self) -> bool {
        matches!(self, Self::Open(OpenError::Stale { .. }))
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Wire(e) => write!(f, "{e}"),
            Self::Open(e) => write!(f, "{e}"),
        }
    }
}

/// What [`AckedConn::start`] made of the bytes read.
pub(super) enum Opening<'a> {
    /// The hello is incomplete: everything was taken.
    More,
    /// The session is open: send the welcome; the rest of the input is frames.
    Open {
        welcome: [u8; WELCOME_LEN],
        rest: &'a [u8],
    },
}

/// One connection in the acknowledged mode.
#[derive(Debug)]
pub(super) struct AckedConn {
    receiver: Receiver,
    id: u64,
}

impl AckedConn {
    pub(super) fn new(id: u64, ack_delay: Duration, (messages, bytes): (u64, u64)) -> Self {
        let us = u64::try_from(ack_delay.as_micros()).unwrap_or(u64::MAX);
        Self {
            receiver: Receiver::new()
                .with_ack_delay_us(us)
                .with_ack_every(messages, bytes),
            id,
        }
    }

    /// Takes hello bytes from `input`; once the hello is whole, opens its session. A session
    /// still held by an older connection of the same writer (one the writer has given up on)
    /// is taken over: that connection is ended and, once it has handed the session back with
    /// everything it delivered, this one opens it, waiting at most `wait`.
    pub(super) fn start<'a>(
        &mut self,
        input: &'a [u8],
        shared: &Shared,
        wait: Duration,
    ) -> Result<Opening<'a>, Refusal> {
        let (used, hello) = self.receiver.read_hello(input).map_err(Refusal::Wire)?;
        let Some(hello) = hello else {
            return Ok(Opening::More);
        };
        let rest = input.get(used..).unwrap_or_default();
        let sessions = &shared.sessions;
        let deadline = Instant::now() + wait;
        let mut table = relock(&sessions.table);
        loop {
            let now = shared.micros(Instant::now());
            match self.receiver.open(hello, &mut table, self.id, now) {
                Ok(welcome) => return Ok(Opening::Open { welcome, rest }),
                Err(OpenError::Held { by }) => {
                    drop(table);
                    if shared.registry().supersede(by) {
                        crate::stats::add(&shared.counters.superseded, 1);
                    }
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() || shared.stopping() {
                        return Err(Refusal::Open(OpenError::Held { by }));
                    }
                    table = relock(&sessions.table);
                    // Woken when a connection hands a session back; bounded anyway.
                    table = sessions
                        .released
                        .wait_timeout(table, left.min(Duration::from_millis(50)))
                        .map_or_else(|e| e.into_inner().0, |(g, _)| g);
                }
                Err(e) => return Err(Refusal::Open(e)),
            }
        }
    }

    /// Whether the session is open (the hello is in).
    pub(super) fn is_open(&self) -> bool {
        self.receiver.is_open()
    }

    /// Whether the connection is inside its hello (a deadline counts it as a frame).
    pub(super) fn is_mid_hello(&self) -> bool {
        self.receiver.is_mid_hello()
    }

    /// Numbers the next message (delivered, or skipped as oversize).
    #[inline]
    pub(super) fn number(&mut self) -> Option<Delivery> {
        self.receiver.on_message()
    }

    /// The callback for `delivery` (a message of `len` bytes) returned.
    #[inline]
    pub(super) fn delivered(&mut self, delivery: Delivery, len: usize) {
        self.receiver.delivered(delivery, len);
    }

    /// The acknowledgement due at `now`, if one is.
    pub(super) fn poll_ack(&mut self, shared: &Shared, now: Instant) -> Option<[u8; ACK_LEN]> {
        self.receiver.poll_ack(shared.micros(now))
    }

    /// Any acknowledgement still pending, whatever the pacing (the connection is ending).
    pub(super) fn last_ack(&mut self) -> Option<[u8; ACK_LEN]> {
        self.receiver.poll_ack(u64::MAX)
    }

    /// How long after `now` an acknowledgement will be due if no more messages come.
    pub(super) fn ack_wait(&self, shared: &Shared, now: Instant) -> Option<Duration> {
        let at = self.receiver.ack_at()?;
        Some(Duration::from_micros(at.saturating_sub(shared.micros(now))))
    }

    /// The connection ends: its session goes back to the table for the writer's next one.
    pub(super) fn close(&mut self, shared: &Shared) {
        let sessions = &shared.sessions;
        let now = shared.micros(Instant::now());
        self.receiver.close(&mut relock(&sessions.table), now);
        sessions.released.notify_all();
    }
}

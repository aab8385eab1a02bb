//! The listener's side of the acknowledged mode: the writer sessions it remembers, and one
//! connection's progress through the handshake and the numbering of its messages.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use buffstreams_framing::acked::{HELLO_LEN, HandshakeError, Hello, SessionId};

use crate::sync::relock;

/// What the callback is told about a message in the acknowledged mode
/// ([`Connection::delivery`](crate::Connection::delivery)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Delivery {
    /// The writer's session: random per writer.
    pub session: SessionId,
    /// The message's number in its session, from 1, in the order the writer sent them.
    pub seq: u64,
    /// Whether this message may have been handed to a callback before: it was re-sent after
    /// a reconnect and this listener does not remember the session (a new listener process,
    /// or a session forgotten after `session_ttl` or beyond `max_sessions`). `false` means
    /// it is certainly the first delivery; an application whose own state survives restarts
    /// can dedupe the `true` ones by `(session, seq)`.
    pub may_repeat: bool,
}

/// One writer session: how far its messages were handed to the callback.
#[derive(Debug)]
pub(super) struct Session {
    pub(super) delivered: u64,
    last_active: Instant,
}

/// The sessions a listener remembers, bounded in number and idle time.
#[derive(Debug, Default)]
pub(super) struct Sessions {
    map: Mutex<HashMap<SessionId, Arc<Mutex<Session>>>>,
}

impl Sessions {
    /// The session a hello names, created if unknown (`known` false) with everything before
    /// `first_seq` taken as delivered. Forgets sessions idle past `ttl` and, when `max` are
    /// remembered, the one idle longest that no connection is using.
    ///
    /// # Errors
    /// [`HandshakeError::BadSequence`] when the hello starts after messages this listener
    /// never delivered (it would leave a gap); `Err(None)` when every remembered session is in
    /// use and there is no room.
    pub(super) fn open(
        &self,
        hello: &Hello,
        now: Instant,
        max: usize,
        ttl: Duration,
    ) -> Result<(Arc<Mutex<Session>>, bool), Option<HandshakeError>> {
        // A known session is locked outside the map's lock: a connection of that session may
        // hold it through a slow callback, and other sessions must not wait for that.
        let known = relock(&self.map).get(&hello.session).cloned();
        if let Some(s) = known {
            let mut state = relock(&s);
            if hello.first_seq > state.delivered + 1 {
                return Err(Some(HandshakeError::BadSequence));
            }
            state.last_active = now;
            drop(state);
            return Ok((s, true));
        }
        let mut map = relock(&self.map);
        if let Some(s) = map.get(&hello.session).cloned() {
            // Created meanwhile by another connection of the session: not known before this
            // hello, so what it re-sends may repeat.
            return Ok((s, false));
        }
        // Only sessions no connection holds (one reference: the map's) may be forgotten.
        let idle = |s: &Arc<Mutex<Session>>| {
            Arc::strong_count(s) == 1 && now.duration_since(relock(s).last_active) >= ttl
        };
        map.retain(|_, s| !idle(s));
        if map.len() >= max {
            let oldest = map
                .iter()
                .filter(|(_, s)| Arc::strong_count(s) == 1)
                .min_by_key(|(_, s)| relock(s).last_active)
                .map(|(id, _)| *id);
            match oldest {
                Some(id) => {
                    map.remove(&id);
                }
                None => return Err(None),
            }
        }
        let s = Arc::new(Mutex::new(Session {
            delivered: hello.first_seq - 1,
            last_active: now,
        }));
        map.insert(hello.session, s.clone());
        Ok((s, false))
    }

    /// Sessions remembered now.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        relock(&self.map).len()
    }
}

/// One connection in the acknowledged mode.
#[derive(Debug, Default)]
pub(super) struct AckedConn {
    /// The hello's bytes so far.
    pre: Vec<u8>,
    hello: Option<Hello>,
    session: Option<Arc<Mutex<Session>>>,
    known: bool,
    /// The number of the next message on this connection.
    next_seq: u64,
    /// The last `delivered` acknowledged on this connection.
    acked: u64,
}

/// What [`AckedConn::take_hello`] found in the bytes read.
pub(super) enum Opening<'a> {
    /// The hello is incomplete: everything was taken.
    More,
    /// The hello is complete (and its session opened); the rest of the input is frames. The
    /// welcome's `delivered` goes back to the writer.
    Welcome { delivered: u64, rest: &'a [u8] },
}

impl AckedConn {
    /// Whether the hello is complete.
    pub(super) fn open(&self) -> bool {
        self.hello.is_some()
    }

    /// Takes hello bytes from `input` until the hello is whole, then opens its session.
    ///
    /// # Errors
    /// The hello is not one (`Some`), or no session could be opened (`None`).
    pub(super) fn take_hello<'a>(
        &mut self,
        input: &'a [u8],
        sessions: &Sessions,
        max: usize,
        ttl: Duration,
    ) -> Result<Opening<'a>, Option<HandshakeError>> {
        let take = (HELLO_LEN - self.pre.len()).min(input.len());
        let (head, rest) = input.split_at(take);
        self.pre.extend_from_slice(head);
        let Some(hello) = Hello::parse(&self.pre).map_err(Some)? else {
            return Ok(Opening::More);
        };
        let (session, known) = sessions.open(&hello, Instant::now(), max, ttl)?;
        let delivered = relock(&session).delivered;
        self.hello = Some(hello);
        self.session = Some(session);
        self.known = known;
        // The writer drops what the welcome says was delivered and re-sends from after it.
        self.next_seq = hello.first_seq.max(delivered + 1);
        self.acked = 0;
        Ok(Opening::Welcome { delivered, rest })
    }

    /// The session (once the hello is in), to lock for a chunk of messages.
    pub(super) fn session(&self) -> Option<Arc<Mutex<Session>>> {
        self.session.clone()
    }

    /// Numbers the next message: `Ok(Some(delivery))` to hand it to the callback,
    /// `Ok(None)` for a duplicate to drop.
    ///
    /// # Errors
    /// The message would leave a gap (the writer skipped numbers): a protocol error.
    pub(super) fn next(&mut self, session: &Session) -> Result<Option<Delivery>, HandshakeError> {
        let seq = self.next_seq;
        self.next_seq += 1;
        if seq <= session.delivered {
            return Ok(None);
        }
        if seq != session.delivered + 1 {
            return Err(HandshakeError::BadSequence);
        }
        let hello = self.hello.ok_or(HandshakeError::NotAcked)?;
        Ok(Some(Delivery {
            session: hello.session,
            seq,
            may_repeat: !self.known && seq <= hello.resent_until,
        }))
    }

    /// How far the session was delivered (once the hello is in).
    pub(super) fn delivered(&self) -> Option<u64> {
        self.session.as_ref().map(|s| relock(s).delivered)
    }

    /// Messages delivered and not yet acknowledged on this connection.
    pub(super) fn unacknowledged(&self, delivered: u64) -> u64 {
        delivered.saturating_sub(self.acked)
    }

    /// The `delivered` to acknowledge now, if it moved since the last acknowledgement.
    pub(super) fn ack_due(&mut self, delivered: u64) -> Option<u64> {
        (delivered > self.acked).then(|| {
            self.acked = delivered;
            delivered
        })
    }

    /// The connection is still inside its hello (a deadline counts it as a frame).
    pub(super) fn mid_hello(&self) -> bool {
        self.hello.is_none() && !self.pre.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(id: u8, first_seq: u64, resent_until: u64) -> Hello {
        Hello {
            session: SessionId([id; 16]),
            first_seq,
            resent_until,
        }
    }

    #[test]
    fn a_known_session_dedupes_and_an_unknown_one_flags_resent_messages() {
        let sessions = Sessions::default();
        let ttl = Duration::from_secs(60);
        // A listener that never saw session 1 gets a reconnect resending 5..=7.
        let mut a = AckedConn::default();
        let bytes = hello(1, 5, 7).encode();
        let Ok(Opening::Welcome { delivered, rest }) = a.take_hello(&bytes, &sessions, 8, ttl)
        else {
            panic!("no welcome")
        };
        assert_eq!((delivered, rest.len()), (4, 0));
        let mut got = Vec::new();
        let session = a.session().unwrap();
        for _ in 0..5 {
            let mut s = relock(&session);
            let d = a.next(&s).unwrap().unwrap();
            s.delivered = d.seq;
            drop(s);
            got.push((d.seq, d.may_repeat));
        }
        assert_eq!(
            got,
            [(5, true), (6, true), (7, true), (8, false), (9, false)]
        );
        // The writer reconnects resending from 7: this listener knows the session now, and
        // its welcome says 9 were delivered, so the writer resumes at 10.
        let mut b = AckedConn::default();
        let Ok(Opening::Welcome { delivered, .. }) =
            b.take_hello(&hello(1, 7, 12).encode(), &sessions, 8, ttl)
        else {
            panic!("no welcome")
        };
        assert_eq!(delivered, 9);
        // Meanwhile the old connection hands 10 to the callback: the new one drops its copy.
        {
            let mut s = relock(&session);
            let d = a.next(&s).unwrap().unwrap();
            assert_eq!(d.seq, 10);
            s.delivered = d.seq;
        }
        let s = relock(&session);
        assert_eq!(b.next(&s), Ok(None)); // 10, a duplicate
        let d = b.next(&s).unwrap().unwrap(); // 11, never delivered here
        assert_eq!((d.seq, d.may_repeat), (11, false));
        drop(s);
        // A hello that claims acknowledgements this listener never gave leaves a gap.
        let mut c = AckedConn::default();
        assert_eq!(
            c.take_hello(&hello(1, 12, 12).encode(), &sessions, 8, ttl)
                .err(),
            Some(Some(HandshakeError::BadSequence))
        );
    }

    #[test]
    fn sessions_are_bounded_and_only_unused_ones_are_forgotten() {
        let sessions = Sessions::default();
        let ttl = Duration::from_secs(3600);
        let held: Vec<_> = (0..3)
            .map(|i| {
                sessions
                    .open(&hello(i, 1, 0), Instant::now(), 3, ttl)
                    .unwrap()
            })
            .collect();
        // Every remembered session is in use: no room.
        assert!(matches!(
            sessions.open(&hello(9, 1, 0), Instant::now(), 3, ttl),
            Err(None)
        ));
        drop(held);
        // Now the oldest goes.
        let (_, known) = sessions
            .open(&hello(9, 1, 0), Instant::now(), 3, ttl)
            .unwrap();
        assert!(!known);
        assert_eq!(sessions.len(), 3);
        assert!(
            !sessions
                .open(&hello(0, 1, 0), Instant::now(), 3, ttl)
                .unwrap()
                .1
        );
        // Idle past the ttl: forgotten at the next open.
        let later = Instant::now() + Duration::from_secs(7200);
        sessions.open(&hello(5, 1, 0), later, 3, ttl).unwrap();
        assert_eq!(sessions.len(), 1);
    }
}

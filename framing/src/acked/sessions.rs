//! The writer sessions a listener remembers, in a fixed table of caller storage: how far each
//! session's messages were delivered, which connection serves it now, and when it was last
//! active (idle sessions are forgotten after a time to live, the one idle longest first when
//! the table is full).
//!
//! Connection ids increase in the order connections were accepted, and a writer has one
//! connection at a time, opened after its previous one was abandoned: so a writer's older
//! connection has the smaller id, and its hello says less than a newer one's about what the
//! writer has written. The table uses that to refuse a hello that arrives late: one older than
//! the connection serving its session, or one older than a connection of a session the table
//! has forgotten (it could be that session's, and would open it as unknown with too little in
//! doubt).

use core::fmt;

use super::wire::{Hello, SessionId};

/// One entry of a [`Sessions`] table. Start from [`SessionSlot::EMPTY`]:
/// `[SessionSlot::EMPTY; 8]` on firmware, `vec![SessionSlot::EMPTY; 4096]` on std.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SessionSlot {
    id: SessionId,
    delivered: u64,
    /// The last message written before this table learned the session (the hello's
    /// `resent_until` then): up to it, a message this table has not delivered may have been
    /// delivered by a listener that is not this table.
    doubt: u64,
    last_active_us: u64,
    /// The connection serving the session now.
    holder: Option<u64>,
    /// The newest connection that served it.
    last_conn: u64,
    used: bool,
}

impl SessionSlot {
    /// A free entry.
    pub const EMPTY: Self = Self {
        id: SessionId([0; 16]),
        delivered: 0,
        doubt: 0,
        last_active_us: 0,
        holder: None,
        last_conn: 0,
        used: false,
    };
}

impl Default for SessionSlot {
    fn default() -> Self {
        Self::EMPTY
    }
}

/// Why a connection's session could not be opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum OpenError {
    /// Another connection (`by`, the id the transport gave it) serves the session: a writer
    /// has one connection at a time, so the older one is dead or dying. End it, let it
    /// [`close`](super::Receiver::close), then open again.
    Held {
        /// The connection holding the session.
        by: u64,
    },
    /// The hello starts after messages this listener never delivered (it would leave a
    /// gap): the peer broke the protocol.
    Gap {
        /// The hello's first message.
        first_seq: u64,
        /// How far this listener delivered the session.
        delivered: u64,
    },
    /// The connection was accepted before connection `newer`, which serves the session now
    /// or served a session this table has since forgotten: its hello is a late one from a
    /// writer that has moved on (or may be), and opening it could mark too little as a
    /// possible repeat. Close this connection; a writer that still uses it connects again.
    Stale {
        /// The newer connection.
        newer: u64,
    },
    /// Every entry serves a connection: no room for another session.
    Full,
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Held { by } => write!(f, "the session is served by connection {by}"),
            Self::Gap {
                first_seq,
                delivered,
            } => write!(
                f,
                "the hello starts at message {first_seq}, but only {delivered} were delivered"
            ),
            Self::Stale { newer } => write!(
                f,
                "a late hello: connection {newer}, accepted after this one, serves or served its session"
            ),
            Self::Full => f.write_str("every writer session in the table is in use"),
        }
    }
}

impl core::error::Error for OpenError {}

/// A session opened for a connection (see [`Sessions::open`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Opened {
    /// How far the session was delivered before this connection.
    pub delivered: u64,
    /// Whether the table knew the session before this hello.
    pub known: bool,
    /// Messages up to this one that this table has not delivered may have been delivered
    /// elsewhere (by a listener that did not pass its knowledge on): they are marked
    /// `may_repeat`.
    pub doubt: u64,
    pub(crate) slot: usize,
}

/// The sessions a listener remembers, in `T` (an array on firmware, a `Vec` on std): a
/// session is served by one connection at a time, and idle sessions are forgotten after
/// `ttl_us` or, when the table is full, the one idle longest first.
///
/// Lookups walk the table: keep it to the number of writers you expect (thousands at most).
#[derive(Debug)]
pub struct Sessions<T> {
    slots: T,
    ttl_us: u64,
    /// A session forgotten was last served by a connection up to this one: an unknown session
    /// is refused on a connection older than it.
    forgot_conn: u64,
}

impl<T: AsRef<[SessionSlot]> + AsMut<[SessionSlot]>> Sessions<T> {
    /// A table over `slots`, forgetting sessions idle for `ttl_us` (0: only when full).
    ///
    /// ```
    /// use buffstreams_framing::acked::{SessionSlot, Sessions};
    ///
    /// let firmware = Sessions::new([SessionSlot::EMPTY; 4], 600_000_000);
    /// assert_eq!(firmware.len(), 0);
    /// ```
    pub const fn new(slots: T, ttl_us: u64) -> Self {
        Self {
            slots,
            ttl_us,
            forgot_conn: 0,
        }
    }

    /// Sessions remembered now.
    pub fn len(&self) -> usize {
        self.slots.as_ref().iter().filter(|s| s.used).count()
    }

    /// Whether it remembers no session.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn idle(&self, slot: &SessionSlot, now_us: u64) -> bool {
        slot.holder.is_none()
            && self.ttl_us > 0
            && now_us.saturating_sub(slot.last_active_us) >= self.ttl_us
    }

    /// Opens `hello`'s session for connection `conn`: a known session resumes where it was
    /// delivered, an unknown one starts with everything before `first_seq` taken as delivered
    /// and everything up to `resent_until` in doubt (it was written to a listener before this
    /// table knew the session, so it may have been delivered there).
    ///
    /// `conn` is an id the transport gives each connection, increasing in the order the
    /// connections were accepted (a counter at accept), never reused.
    ///
    /// # Errors
    /// [`OpenError::Held`] while an older connection serves the session, [`OpenError::Stale`]
    /// when this hello is older than the session's connection or than a forgotten session's,
    /// [`OpenError::Gap`] when it starts after undelivered messages, [`OpenError::Full`] when
    /// every entry is in use.
    pub fn open(&mut self, hello: &Hello, conn: u64, now_us: u64) -> Result<Opened, OpenError> {
        let found = self
            .slots
            .as_ref()
            .iter()
            .position(|s| s.used && s.id == hello.session);
        if let Some(i) = found
            && let Some(slot) = self.slots.as_ref().get(i).copied()
            && !self.idle(&slot, now_us)
        {
            if let Some(by) = slot.holder.filter(|&by| by != conn) {
                return Err(if by > conn {
                    OpenError::Stale { newer: by }
                } else {
                    OpenError::Held { by }
                });
            }
            if hello.first_seq > slot.delivered.saturating_add(1) {
                return Err(OpenError::Gap {
                    first_seq: hello.first_seq,
                    delivered: slot.delivered,
                });
            }
            if let Some(s) = self.slots.as_mut().get_mut(i) {
                s.holder = Some(conn);
                s.last_conn = s.last_conn.max(conn);
                s.last_active_us = now_us;
            }
            return Ok(Opened {
                delivered: slot.delivered,
                known: true,
                doubt: slot.doubt,
                slot: i,
            });
        }
        // Unknown (or forgotten): a free entry, an expired one, or the one idle longest.
        let i = found
            .or_else(|| self.slots.as_ref().iter().position(|s| !s.used))
            .or_else(|| {
                let slots = self.slots.as_ref();
                (0..slots.len())
                    .filter(|&i| slots.get(i).is_some_and(|s| s.holder.is_none()))
                    .min_by_key(|&i| slots.get(i).map_or(u64::MAX, |s| s.last_active_us))
            })
            .ok_or(OpenError::Full)?;
        let slot = self.slots.as_mut().get_mut(i).ok_or(OpenError::Full)?;
        // What the entry knew is forgotten now: a connection older than the last one that
        // served it may carry a late hello of that session, understating its doubt.
        let forgot_conn = if slot.used {
            self.forgot_conn.max(slot.last_conn)
        } else {
            self.forgot_conn
        };
        if conn < forgot_conn {
            return Err(OpenError::Stale { newer: forgot_conn });
        }
        self.forgot_conn = forgot_conn;
        let delivered = hello.first_seq.saturating_sub(1);
        *slot = SessionSlot {
            id: hello.session,
            delivered,
            doubt: hello.resent_until,
            last_active_us: now_us,
            holder: Some(conn),
            last_conn: conn,
            used: true,
        };
        Ok(Opened {
            delivered,
            known: false,
            doubt: hello.resent_until,
            slot: i,
        })
    }

    /// Connection `conn` no longer serves the session it opened as `opened`, which is now
    /// delivered up to `delivered`.
    pub(crate) fn release(&mut self, opened: &Opened, conn: u64, delivered: u64, now_us: u64) {
        if let Some(s) = self.slots.as_mut().get_mut(opened.slot)
            && s.used
            && s.holder == Some(conn)
        {
            s.holder = None;
            s.delivered = s.delivered.max(delivered);
            s.last_active_us = now_us;
        }
    }

    /// The connection serving `session`, if one does.
    pub fn holder(&self, session: &SessionId) -> Option<u64> {
        self.slots
            .as_ref()
            .iter()
            .find(|s| s.used && s.id == *session)
            .and_then(|s| s.holder)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(id: u8, first_seq: u64) -> Hello {
        Hello {
            session: SessionId([id; 16]),
            first_seq,
            resent_until: first_seq.saturating_sub(1),
        }
    }

    #[test]
    fn one_connection_at_a_time_and_a_known_session_resumes() {
        let mut t = Sessions::new([SessionSlot::EMPTY; 2], 1_000);
        let a = t.open(&hello(1, 5), 10, 0).unwrap();
        assert_eq!((a.delivered, a.known, a.doubt), (4, false, 4));
        assert_eq!(t.open(&hello(1, 5), 11, 0), Err(OpenError::Held { by: 10 }));
        t.release(&a, 10, 9, 1);
        let b = t.open(&hello(1, 7), 11, 2).unwrap();
        assert_eq!((b.delivered, b.known, b.doubt), (9, true, 4));
        t.release(&b, 11, 9, 3);
        assert_eq!(
            t.open(&hello(1, 12), 12, 4),
            Err(OpenError::Gap {
                first_seq: 12,
                delivered: 9
            })
        );
        // Idle past the time to live: forgotten.
        let c = t.open(&hello(1, 12), 12, 2_000).unwrap();
        assert_eq!((c.delivered, c.known), (11, false));
    }

    #[test]
    fn a_full_table_forgets_the_session_idle_longest_never_one_in_use() {
        let mut t = Sessions::new([SessionSlot::EMPTY; 2], 0);
        let a = t.open(&hello(1, 1), 1, 0).unwrap();
        let b = t.open(&hello(2, 1), 2, 0).unwrap();
        assert_eq!(t.open(&hello(3, 1), 3, 0), Err(OpenError::Full));
        t.release(&b, 2, 0, 5);
        t.release(&a, 1, 0, 7);
        t.open(&hello(3, 1), 3, 8).unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t.holder(&SessionId([2; 16])), None);
        // Session 2 was idle longest: forgotten; session 1 is still known.
        assert!(t.open(&hello(1, 1), 4, 9).unwrap().known);
    }

    #[test]
    fn a_late_hello_is_refused_not_taken_for_the_writer() {
        let mut t = Sessions::new([SessionSlot::EMPTY; 1], 1_000);
        // Connection 5 serves the session; 3's hello was the writer's, before it moved on.
        let a = t.open(&hello(1, 1), 5, 0).unwrap();
        assert_eq!(
            t.open(&hello(1, 1), 3, 1),
            Err(OpenError::Stale { newer: 5 })
        );
        t.release(&a, 5, 1, 2);
        // The session idles out; 3's hello arrives only now. Opening it as unknown would
        // take its resent_until (0) as the doubt, though 5 delivered message 1.
        assert_eq!(
            t.open(&hello(1, 1), 3, 5_000),
            Err(OpenError::Stale { newer: 5 })
        );
        // The same for another session on a connection older than the forgotten one's.
        assert_eq!(
            t.open(&hello(2, 1), 4, 5_000),
            Err(OpenError::Stale { newer: 5 })
        );
        // A connection the writer opened after 5 says what it wrote: message 1 is in doubt.
        let mut fresh = hello(1, 1);
        fresh.resent_until = 1;
        let b = t.open(&fresh, 6, 5_001).unwrap();
        assert_eq!((b.delivered, b.known, b.doubt), (0, false, 1));
    }
}

//! Counters the listener and the writer keep.

/// Counters a listener keeps (read them with [`Listener::stats`](crate::Listener::stats)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub struct ListenerStats {
    /// Complete messages handed to the handler.
    pub messages_in: u64,
    /// Payload bytes of those messages.
    pub bytes_in: u64,
    /// Replies staged by handlers (and [`Listener::push`](crate::Listener::push) frames).
    pub messages_out: u64,
    /// Wire bytes of those replies, headers included.
    pub bytes_out: u64,
    /// Connections accepted.
    pub connections_total: u64,
    /// Connections aborted because the peer broke the protocol.
    pub protocol_errors: u64,
    /// Connections that ended (closed or reset by the peer) inside a frame; the partial frame
    /// was dropped, never delivered.
    pub truncated: u64,
    /// Oversize frames discarded under `Oversize::Skip`.
    pub skipped: u64,
    /// Connections aborted by the idle timeout.
    pub idle_timeouts: u64,
    /// Connections aborted because a message did not arrive whole within the frame deadline.
    pub frame_timeouts: u64,
    /// Replies refused because they did not fit the reply buffer.
    pub replies_refused: u64,
    /// Times a socket could not be put back to listening.
    pub listen_errors: u64,
    /// Acknowledged mode: connections refused at their opening (a plain peer, a bad hello,
    /// no room for the session).
    pub handshake_errors: u64,
    /// Acknowledged mode: acknowledgements staged.
    pub acks_out: u64,
    /// Acknowledged mode: connections ended because their writer opened a newer one (or
    /// because their hello came late, after a newer connection's).
    pub superseded: u64,
}

/// Counters a writer keeps (read them with [`Writer::stats`](crate::Writer::stats)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub struct WriterStats {
    /// Messages queued in the send ring.
    pub messages_out: u64,
    /// Wire bytes of those messages, headers included.
    pub bytes_out: u64,
    /// Writes refused with [`SendError::Full`](crate::SendError::Full) (the caller retries after a poll).
    pub full: u64,
    /// Replies read.
    pub replies: u64,
    /// Payload bytes of those replies.
    pub reply_bytes: u64,
    /// Connection attempts started.
    pub connect_attempts: u64,
    /// Connections established after the first (after a lost connection or a give-up).
    pub reconnects: u64,
    /// Attempts that failed (refused, reset, timed out, or no route).
    pub connect_failures: u64,
    /// Established connections that were lost (reset, closed by the peer, or aborted after a
    /// protocol error in the replies).
    pub disconnects: u64,
    /// Bytes still in the send ring when a connection was lost: the peer may or may not have
    /// received them. What had left the ring was acknowledged by the peer's TCP. Counted in
    /// bytes where transport-std's `in_doubt` counts messages: the ring holds bytes, the
    /// frames in it cannot be read back, and a message may have partly left it.
    pub in_doubt_bytes: u64,
    /// Reply streams aborted because the peer broke the protocol.
    pub protocol_errors: u64,
    /// Acknowledged mode: messages the listener acknowledged.
    pub acked: u64,
    /// Acknowledged mode: messages written again after a reconnect.
    pub resent: u64,
    /// Acknowledged mode: messages given up with [`Writer::give_up`](crate::Writer::give_up).
    pub dead_lettered: u64,
}

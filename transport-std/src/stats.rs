//! Counters a user can read at any time (relaxed atomics: cheap, eventually exact).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

macro_rules! counters {
    ($(#[$meta:meta])* $snapshot:ident, $live:ident { $($(#[$fmeta:meta])* $field:ident),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        #[non_exhaustive]
        pub struct $snapshot {
            $($(#[$fmeta])* pub $field: u64,)*
        }

        #[derive(Debug, Default)]
        pub(crate) struct $live {
            $(pub(crate) $field: AtomicU64,)*
        }

        impl $live {
            pub(crate) fn snapshot(&self) -> $snapshot {
                $snapshot { $($field: self.$field.load(Relaxed),)* }
            }
        }
    };
}

counters! {
    /// Listener counters, from [`ListenerHandle::stats`](crate::ListenerHandle::stats).
    ListenerStats, ListenerCounters {
        /// Messages handed to the callback.
        messages_in,
        /// Payload bytes handed to the callback.
        bytes_in,
        /// Reply messages written back.
        messages_out,
        /// Reply bytes written back, headers included.
        bytes_out,
        /// Connections open now.
        connections_open,
        /// Connections accepted since the start.
        connections_total,
        /// Connections closed at once because `max_connections` was reached (under
        /// `OverLimit::Refuse`, or `Evict` with no connection to evict).
        connections_refused,
        /// Connections closed to make room for a newcomer (`OverLimit::Evict`).
        evictions,
        /// Connections closed at accept because their address had `max_connections_per_ip`.
        per_ip_refused,
        /// Times accepting paused because `max_connections` was reached (`OverLimit::Wait`).
        accept_waits,
        /// Connections closed for sending nothing within the idle timeout.
        idle_timeouts,
        /// Connections closed for not completing a frame within the frame timeout.
        frame_timeouts,
        /// Connections closed for breaking the protocol (oversize under `Reject`, bad header).
        protocol_errors,
        /// Connections that ended inside a frame (the partial frame was dropped).
        truncated,
        /// Oversize frames discarded under `Oversize::Skip`.
        skipped,
        /// Callback calls that returned an error.
        callback_errors,
        /// Callback calls that panicked (each closed its connection).
        callback_panics,
        /// Socket errors on connections.
        io_errors,
        /// Acknowledged mode: connections refused at the handshake (a plain peer, a bad
        /// hello, too many sessions).
        handshake_errors,
        /// Acknowledged mode: connections ended because their writer opened a newer one, which
        /// took the session over (or because their hello came late, after a newer connection's).
        superseded,
        /// Acknowledged mode: acknowledgements sent.
        acks_out,
        /// TLS connections closed for failing TLS (feature `tls`): the handshake (a plaintext
        /// peer, a refused certificate, no common version) or a bad record later.
        tls_errors,
        /// Reads that busy polling answered, so the connection thread did not sleep
        /// ([`ListenerConfig::with_busy_poll`](crate::ListenerConfig::with_busy_poll)).
        polled_reads,
    }
}

counters! {
    /// Writer counters, from [`Writer::stats`](crate::Writer::stats).
    WriterStats, WriterCounters {
        /// Messages queued by `write`.
        messages_out,
        /// Bytes handed to the kernel, headers included.
        bytes_out,
        /// Batches written (one or more `write` calls each).
        batches,
        /// Successful reconnects after a broken connection.
        reconnects,
        /// Failed connection attempts.
        connect_failures,
        /// Messages handed to the dead-letter queue or callback.
        dead_lettered,
        /// Messages that were fully handed to the kernel on a connection that then broke in
        /// the same batch: they may or may not have arrived.
        in_doubt,
        /// Socket write errors.
        io_errors,
        /// Messages read back from the listener
        /// ([`WriterConfig::with_on_reply`](crate::WriterConfig::with_on_reply)).
        replies,
        /// Payload bytes of those replies.
        reply_bytes,
        /// Reply streams aborted because the listener broke the protocol (a bad header, an
        /// oversize reply, a bad acknowledgement) or closed inside a reply; each closed its
        /// connection.
        protocol_errors,
        /// Acknowledged mode: messages the listener acknowledged.
        acked,
        /// Acknowledged mode: messages written again after a reconnect (not acknowledged on
        /// an earlier connection).
        resent,
        /// Acknowledged mode: times a batch waited for the window to have room.
        window_waits,
        /// TLS handshakes that failed (feature `tls`), and TLS connections the listener broke
        /// later.
        tls_errors,
    }
}

pub(crate) fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Relaxed);
}

pub(crate) fn sub(c: &AtomicU64, n: u64) {
    c.fetch_sub(n, Relaxed);
}

//! The plain mode's connection: sending batches, reconnecting, in-doubt accounting and dead
//! letters, and the reply thread when the application reads replies.

use std::io;
use std::time::{Duration, Instant};

use buffstreams_framing::{Frames, LengthPrefix};

use super::Shared;
use super::io::{peer_closed, write_counting};
use super::replies::{Plain, Replies};
use super::stream::Stream;
use crate::stats::add;
use crate::sync::relock;

/// A batch that follows a pause this long first checks whether the peer has closed.
const QUIET: Duration = Duration::from_micros(100);

impl<H: LengthPrefix> Shared<H> {
    /// Writes one batch of whole frames, reconnecting and re-sending as the policy allows.
    pub(super) fn send_plain(&self, batch: &[u8]) {
        let mut link = relock(&self.conn);
        let link = &mut *link;
        let conn = &mut link.stream;
        let mut off = 0usize;
        let mut failures = 0u32;
        let started = Instant::now();
        // Streaming (batches less than `QUIET` apart), a check per batch would cost 4 % of
        // the throughput and save nothing: what the peer did not read when it closed is in
        // doubt anyway. After a pause it is what keeps a restarted listener from losing the
        // next batch.
        let mut check = started.duration_since(link.last_batch) >= QUIET;
        while off < batch.len() {
            let healthy = conn
                .as_ref()
                .is_some_and(|s| !(check && peer_closed(s.tcp())));
            check = false;
            if !healthy {
                if let Some(old) = conn.take() {
                    old.shutdown();
                    self.note(
                        log::Level::Info,
                        format_args!("peer closed the connection, reconnecting"),
                    );
                }
                match self
                    .connect(started, &mut failures)
                    .and_then(|s| self.read_replies(&s).map(|()| s))
                {
                    Ok(s) => {
                        add(&self.counters.reconnects, 1);
                        self.note(log::Level::Info, format_args!("reconnected"));
                        *conn = Some(s);
                    }
                    Err(e) => {
                        let n = self.dead_letter(batch.get(off..).unwrap_or_default());
                        self.note(
                            log::Level::Error,
                            format_args!("cannot reconnect ({e}); {n} messages dead-lettered"),
                        );
                        return;
                    }
                }
            }
            let Some(stream) = conn.as_mut() else {
                continue;
            };
            let rest = batch.get(off..).unwrap_or_default();
            let (written, result) = write_counting(stream, rest);
            add(&self.counters.bytes_out, written as u64);
            match result {
                Ok(()) => {
                    add(&self.counters.batches, 1);
                    link.last_batch = Instant::now();
                    return;
                }
                Err(e) => {
                    add(&self.counters.io_errors, 1);
                    // Frames the kernel took whole are in doubt; the one it took part of (and
                    // every later one) is sent again on the next connection: the peer drops
                    // the partial frame when this connection dies.
                    let (restart, whole) = self.frame_boundary(batch, off, off + written);
                    add(&self.counters.in_doubt, whole);
                    self.note(
                        log::Level::Warn,
                        format_args!("write failed after {written} bytes: {e}"),
                    );
                    off = restart;
                    if let Some(old) = conn.take() {
                        old.shutdown();
                    }
                    failures = failures.saturating_add(1);
                    if self.out_of_budget(started, failures) {
                        let n = self.dead_letter(batch.get(off..).unwrap_or_default());
                        self.note(
                            log::Level::Error,
                            format_args!("giving up; {n} messages dead-lettered"),
                        );
                        return;
                    }
                }
            }
        }
    }

    /// With `on_reply`, starts the reply thread of a new connection. Under TLS always: the
    /// listener's TLS messages (session tickets, alerts) are read, so that closing never
    /// finds them unread (the kernel would reset the connection, and the listener could lose
    /// what it had not read yet).
    pub(super) fn read_replies(&self, stream: &Stream) -> io::Result<()> {
        let on_reply = self.config.on_reply_arc();
        if on_reply.is_none() && !self.config.is_tls() {
            return Ok(());
        }
        let back = Plain {
            on_reply,
            counters: self.counters.clone(),
        };
        self.add_replies(Replies::start::<H>(
            stream,
            self.config.framing(),
            back,
            self.counters.clone(),
            self.addr,
            Vec::new(),
        )?);
        Ok(())
    }

    /// Keeps a connection's reply thread (and forgets those whose connection has ended).
    pub(super) fn add_replies(&self, r: Replies) {
        let mut replies = relock(&self.replies);
        replies.retain(|r| !r.is_finished());
        replies.push(r);
    }

    /// Walks the frames of `batch` from `from` (a frame start): returns the start of the frame
    /// that contains byte `upto`, and how many frames end at or before it.
    fn frame_boundary(&self, batch: &[u8], from: usize, upto: usize) -> (usize, u64) {
        let mut frames =
            Frames::<H>::new(self.config.framing(), batch.get(from..).unwrap_or_default());
        let mut at = from;
        let mut whole = 0;
        while at < upto {
            // We framed every byte of the batch, so every frame in it is whole and valid.
            let Some(Ok(_)) = frames.next() else {
                break;
            };
            let end = from.saturating_add(frames.offset());
            if end > upto {
                break;
            }
            at = end;
            whole += 1;
        }
        (at, whole)
    }
}

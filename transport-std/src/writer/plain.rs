//! The connection: sending batches, reconnecting, in-doubt accounting and dead letters.

use std::io::{self, Write};
use std::mem::MaybeUninit;
use std::net::TcpStream;
use std::sync::atomic::Ordering::Release;
use std::thread;
use std::time::{Duration, Instant};

use buffstreams_framing::{Frames, LengthPrefix};

use super::Shared;
use super::replies::Replies;
use crate::stats::add;
use crate::sync::relock;

/// A batch that follows a pause this long first checks whether the peer has closed.
const QUIET: Duration = Duration::from_micros(100);

impl<H: LengthPrefix> Shared<H> {
    /// Writes one batch of whole frames, reconnecting and re-sending as the policy allows.
    pub(super) fn send(&self, batch: &[u8]) {
        if let Some(acks) = &self.acks {
            return self.send_acked(acks, batch);
        }
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
            let healthy = conn.as_ref().is_some_and(|s| !(check && peer_closed(s)));
            check = false;
            if !healthy {
                if let Some(old) = conn.take() {
                    let _ = old.shutdown(std::net::Shutdown::Both);
                    self.note(
                        log::Level::Info,
                        format_args!("peer closed the connection, reconnecting"),
                    );
                }
                match self.connect(started, &mut failures) {
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
                        let _ = old.shutdown(std::net::Shutdown::Both);
                    }
                    failures += 1;
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

    /// Queues a log line for [`deliver_deferred`](Self::deliver_deferred): this runs with the
    /// connection locked and, inside a writing thread's append, its lane half-written, so a
    /// logger that writes through this very writer must not be called here.
    pub(super) fn note(&self, level: log::Level, args: std::fmt::Arguments<'_>) {
        if level <= log::max_level() {
            relock(&self.notes).push((level, format!("writer {}: {args}", self.addr)));
            self.waiting.store(true, Release);
        }
    }

    pub(super) fn out_of_budget(&self, started: Instant, failures: u32) -> bool {
        let retry = self.config.retry();
        failures >= retry.max_attempts() || retry.deadline().is_some_and(|d| started.elapsed() >= d)
    }

    pub(super) fn connect(&self, started: Instant, failures: &mut u32) -> io::Result<TcpStream> {
        loop {
            match TcpStream::connect_timeout(&self.addr, self.config.connect_timeout()) {
                Ok(s) => {
                    s.set_nodelay(self.config.nodelay())?;
                    s.set_write_timeout(self.config.write_timeout())?;
                    self.read_replies(&s)?;
                    return Ok(s);
                }
                Err(e) => {
                    add(&self.counters.connect_failures, 1);
                    *failures += 1;
                    if self.out_of_budget(started, *failures) {
                        return Err(e);
                    }
                    let mut wait = self.config.retry().wait_after(*failures);
                    if let Some(d) = self.config.retry().deadline() {
                        wait = wait.min(d.saturating_sub(started.elapsed()));
                    }
                    self.note(
                        log::Level::Debug,
                        format_args!("connect failed ({e}), retrying in {wait:?}"),
                    );
                    thread::sleep(wait);
                }
            }
        }
    }

    /// With `on_reply`, starts the reply thread of a new connection (and forgets those whose
    /// connection has ended).
    fn read_replies(&self, stream: &TcpStream) -> io::Result<()> {
        // The acknowledged mode starts its reply thread after the handshake.
        let Some(on_reply) = self.config.on_reply_arc().filter(|_| self.acks.is_none()) else {
            return Ok(());
        };
        let mut replies = relock(&self.replies);
        replies.retain(|r| !r.is_finished());
        replies.push(Replies::start::<H>(
            stream,
            self.config.framing(),
            Some(on_reply),
            None,
            self.counters.clone(),
            self.addr,
            Vec::new(),
        )?);
        Ok(())
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

    pub(super) fn dead_letter(&self, frames: &[u8]) -> u64 {
        let mut n = 0;
        let mut queue = relock(&self.dead);
        for payload in Frames::<H>::new(self.config.framing(), frames) {
            let Ok(payload) = payload else {
                break;
            };
            queue.push(payload.to_vec());
            n += 1;
        }
        if n > 0 && self.config.dead_letter().is_some() {
            self.waiting.store(true, Release);
        }
        add(&self.counters.dead_lettered, n);
        n
    }
}

/// Writes all of `bytes`, reporting how many were taken even on failure.
pub(super) fn write_counting(stream: &mut impl Write, bytes: &[u8]) -> (usize, io::Result<()>) {
    let mut written = 0;
    while written < bytes.len() {
        match stream.write(bytes.get(written..).unwrap_or_default()) {
            Ok(0) => return (written, Err(io::ErrorKind::WriteZero.into())),
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (written, Err(e)),
        }
    }
    (written, Ok(()))
}

/// Whether the peer has closed (FIN or reset). On Linux one `poll`, which does not take the
/// socket lock as a peek does; the peek settles it when the peer has sent us data.
fn peer_closed(stream: &TcpStream) -> bool {
    #[cfg(target_os = "linux")]
    {
        use rustix::event::{PollFd, PollFlags, Timespec, poll};
        let mut fds = [PollFd::new(stream, PollFlags::IN | PollFlags::RDHUP)];
        let now = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        if let Ok(ready) = poll(&mut fds, Some(&now)) {
            let events = fds[0].revents();
            if ready == 0 {
                return false;
            }
            if events.intersects(PollFlags::RDHUP | PollFlags::HUP | PollFlags::ERR) {
                return true;
            }
        }
    }
    peek_closed(stream)
}

/// A non-blocking peek of one byte, no data consumed.
fn peek_closed(stream: &TcpStream) -> bool {
    let mut byte = [MaybeUninit::<u8>::uninit(); 1];
    match socket2::SockRef::from(stream)
        .recv_with_flags(&mut byte, libc::MSG_PEEK | libc::MSG_DONTWAIT)
    {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
        ),
    }
}

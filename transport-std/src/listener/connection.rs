//! One connection: its thread's read loop and the replies it sends.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::{Duration, Instant};

use buffstreams_framing::acked::{REPLY, ack, back_config, welcome};
use buffstreams_framing::{Decoder, EncodeError, Encoder, Event, LengthPrefix};

use super::Handler;
use super::acked::{AckedConn, Delivery, Opening};
use super::config::ListenerConfig;
use super::deadline::{Deadlines, Expired};
use super::shared::{Activity, Shared};
use crate::error::Error;
use crate::stats::{add, sub};
use crate::sync::relock;

/// The connection a message came from, handed to [`Listener::spawn_with_reply`](super::Listener::spawn_with_reply) callbacks.
pub struct Connection<H> {
    peer: SocketAddr,
    stream: Arc<TcpStream>,
    encoder: Encoder<H>,
    /// The longest reply (the framing's maximum; in the acknowledged mode the encoder allows
    /// one more byte, the kind).
    max_reply: usize,
    out: Vec<u8>,
    shared: Arc<Shared>,
    /// A reply write failed: part of a frame may be on the wire, so the connection must end.
    broken: bool,
    acked: bool,
    delivery: Option<Delivery>,
}

impl<H> std::fmt::Debug for Connection<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

impl<H: LengthPrefix> Connection<H> {
    pub(super) fn new(
        peer: SocketAddr,
        stream: Arc<TcpStream>,
        config: &ListenerConfig,
        shared: Arc<Shared>,
    ) -> Self {
        let framing = config.framing();
        let max_reply = Encoder::<H>::new(framing).max_frame_len();
        let framing = if config.acks() {
            back_config::<H>(framing)
        } else {
            framing
        };
        Self {
            peer,
            stream,
            encoder: Encoder::new(framing),
            max_reply,
            out: Vec::new(),
            shared,
            broken: false,
            acked: config.acks(),
            delivery: None,
        }
    }

    /// In the acknowledged mode ([`ListenerConfig::with_acks`]), the message's session,
    /// number and whether it may be a repeat (see [`Delivery`]); `None` otherwise.
    pub fn delivery(&self) -> Option<Delivery> {
        self.delivery
    }

    /// Queues an acknowledgement of `delivered` if it moved since this connection's last one.
    fn acknowledge(&mut self, acked: &mut AckedConn, delivered: u64) {
        if let Some(d) = acked.ack_due(delivered)
            && self.control(&ack(d)).is_ok()
        {
            add(&self.shared.counters.acks_out, 1);
        }
    }

    /// Queues an acknowledged-mode control frame (a welcome or an ack).
    fn control(&mut self, payload: &[u8]) -> Result<(), Error> {
        let header = self.encoder.header(payload.len())?;
        self.out.extend_from_slice(&header);
        self.out.extend_from_slice(payload);
        Ok(())
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// Queues a reply message on this connection; returns its size on the wire. Replies are
    /// written when the callback has seen every message of the chunk just read, so pipelined
    /// requests get their replies in one write and a lone request's reply goes out at once.
    ///
    /// # Errors
    /// [`Error::Encode`] if the reply is longer than the maximum message size.
    pub fn reply(&mut self, message: &[u8]) -> Result<usize, Error> {
        if message.len() > self.max_reply {
            return Err(Error::Encode(EncodeError::FrameTooLong {
                len: message.len(),
                max: self.max_reply,
            }));
        }
        let kind = if self.acked { &[REPLY][..] } else { &[] };
        let header = self.encoder.header(kind.len() + message.len())?;
        self.out.extend_from_slice(&header);
        self.out.extend_from_slice(kind);
        self.out.extend_from_slice(message);
        add(&self.shared.counters.messages_out, 1);
        if self.out.len() >= 64 * 1024 {
            self.flush()?;
        }
        Ok(header.len() + kind.len() + message.len())
    }

    /// Writes queued replies now.
    ///
    /// # Errors
    /// The socket's error; the connection is closed after the callback returns.
    pub fn flush(&mut self) -> Result<(), Error> {
        if self.broken {
            return Err(Error::Io(io::ErrorKind::BrokenPipe.into()));
        }
        if self.out.is_empty() {
            return Ok(());
        }
        let r = (&*self.stream).write_all(&self.out);
        self.broken = r.is_err();
        add(&self.shared.counters.bytes_out, self.out.len() as u64);
        self.out.clear();
        r.map_err(Error::Io)
    }
}

/// While a writer streams, an acknowledgement goes out at least every this many messages.
const ACK_EVERY: u64 = 4_096;

/// How long an acknowledgement waits for more messages to cover.
const ACK_DELAY: Duration = Duration::from_micros(500);

/// Whether this platform can wait for data with a timeout ([`ready_within`]); where it
/// cannot, every chunk is acknowledged at once.
const CAN_WAIT: bool = cfg!(target_os = "linux");

/// Whether data (or the end of the stream) arrives within `wait`.
fn ready_within(stream: &TcpStream, wait: Duration) -> bool {
    #[cfg(target_os = "linux")]
    {
        use rustix::event::{PollFd, PollFlags, Timespec, poll};
        let mut fds = [PollFd::new(stream, PollFlags::IN)];
        let timeout = Timespec {
            tv_sec: 0,
            tv_nsec: i64::from(wait.subsec_nanos()),
        };
        poll(&mut fds, Some(&timeout)).is_ok_and(|n| n > 0)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (stream, wait);
        false
    }
}

/// Reads after shutdown starts are bounded, so a peer that never stops sending cannot hold
/// the listener open.
const DRAIN_READS: u32 = 64;

pub(super) fn connection<H: LengthPrefix>(
    id: u64,
    stream: Arc<TcpStream>,
    mut conn: Connection<H>,
    activity: Arc<Activity>,
    config: ListenerConfig,
    shared: Arc<Shared>,
    handler: Arc<Handler<H>>,
) {
    let peer = conn.peer;
    let counters = &shared.counters;
    let mut decoder = Decoder::<H, Vec<u8>>::new(config.framing(), Vec::new());
    let mut acked = AckedConn::default();
    let mut buf = vec![0u8; config.read_buffer()];
    let mut drain = 0u32;
    let mut streaming = false;
    let mut deadlines = Deadlines::new(
        config.idle_timeout(),
        config.frame_timeout(),
        Instant::now(),
    );
    // An acknowledgement held back while the writer streams: sent once no data is waiting.
    let mut ack_pending = false;
    loop {
        let polled = &counters.polled_reads;
        let mut early = None;
        if ack_pending {
            // More data soon (busy polling while the writer streams, as a streaming read
            // would)? Else wait a little longer, sleeping, and acknowledge if nothing comes.
            if streaming {
                early = shared
                    .pollers
                    .poll(&stream, &mut buf, config.busy_poll(), polled);
            }
            if early.is_none() && !ready_within(&stream, ACK_DELAY) {
                // Nothing came: the writer may be waiting for this acknowledgement.
                ack_pending = false;
                if let Some(d) = acked.delivered() {
                    conn.acknowledge(&mut acked, d);
                }
                if conn.flush().is_err() {
                    add(&counters.io_errors, 1);
                    break;
                }
            }
        }
        let read = if let Some(read) = early {
            read
        } else if streaming {
            shared
                .pollers
                .read(&stream, &mut buf, config.busy_poll(), polled)
        } else {
            (&*stream).read(&mut buf)
        };
        streaming = read.as_ref().is_ok_and(|&n| n >= buf.len() / 2);
        let now = Instant::now();
        let n = match read {
            Ok(0) => {
                if activity.evicted() {
                    // Counted and logged by the accept thread.
                } else if decoder.is_mid_frame() {
                    add(&counters.truncated, 1);
                    log::info!("{peer}: closed inside a frame; the partial frame is dropped");
                }
                break;
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                // Either a deadline passed, or the read woke before it (the timeout is rounded
                // down) and waits again for what is left.
                if over_deadline(&mut deadlines, now, &stream, &config, &shared, peer) {
                    break;
                }
                continue;
            }
            Err(_) if activity.evicted() => break,
            Err(e) => {
                add(&counters.io_errors, 1);
                log::warn!("{peer}: read failed: {e}");
                break;
            }
        };
        let mut input = buf.get(..n).unwrap_or_default();
        // Counted per chunk, not per message: connection threads share these counters.
        let (mut messages, mut bytes, mut skipped, mut duplicates) = (0u64, 0u64, 0u64, 0u64);
        let mut close = false;
        activity.set_busy(true);
        if config.acks() && !acked.open() {
            let max = config.max_sessions();
            match acked.take_hello(input, &shared.sessions, max, config.session_ttl()) {
                Ok(Opening::More) => input = &[],
                Ok(Opening::Welcome { delivered, rest }) => {
                    input = rest;
                    if conn.control(&welcome(delivered)).is_err() {
                        close = true;
                    }
                }
                Err(e) => {
                    add(&counters.handshake_errors, 1);
                    match e {
                        Some(e) => log::warn!("{peer}: {e}; closing"),
                        None => log::warn!("{peer}: {max} writer sessions in use; closing"),
                    }
                    close = true;
                    input = &[];
                }
            }
        }
        // The session is locked for the chunk: a re-sent message on another connection of the
        // same writer waits, so no message is handed to the callback twice.
        let session = acked.session();
        let mut session = session.as_deref().map(relock);
        while !input.is_empty() {
            let fed = match decoder.feed(input) {
                Ok(fed) => fed,
                Err(e) => {
                    add(&counters.protocol_errors, 1);
                    log::warn!("{peer}: protocol error, closing: {e}");
                    let hook = relock(&shared.on_protocol_error).clone();
                    if let Some(hook) = hook {
                        let _ = catch_unwind(AssertUnwindSafe(|| hook(peer, &e)));
                    }
                    close = true;
                    break;
                }
            };
            input = input.get(fed.consumed..).unwrap_or_default();
            // In the acknowledged mode every message has its number, a skipped one too (it
            // counts as handled: `Oversize::Skip` is the application's choice to drop it).
            let numbered = matches!(fed.event, Some(Event::Frame(_) | Event::Skipped(_)));
            let delivery = match session.as_deref() {
                Some(s) if numbered => match acked.next(s) {
                    Ok(Some(delivery)) => Some(delivery),
                    Ok(None) => {
                        duplicates += 1;
                        continue;
                    }
                    Err(e) => {
                        add(&counters.protocol_errors, 1);
                        log::warn!("{peer}: {e}; closing");
                        close = true;
                        break;
                    }
                },
                _ => None,
            };
            match fed.event {
                Some(Event::Frame(message)) => {
                    conn.delivery = delivery;
                    let called = catch_unwind(AssertUnwindSafe(|| handler(message, &mut conn)));
                    // The callback returned: in the acknowledged mode the message is delivered.
                    if let (Some(s), Some(d), Ok(_)) =
                        (session.as_deref_mut(), conn.delivery, &called)
                    {
                        s.delivered = d.seq;
                    }
                    match called {
                        Ok(Ok(())) => {
                            messages += 1;
                            bytes += message.len() as u64;
                        }
                        Ok(Err(e)) => {
                            messages += 1;
                            bytes += message.len() as u64;
                            add(&counters.callback_errors, 1);
                            log::warn!("{peer}: callback error: {e}");
                        }
                        Err(_) => {
                            add(&counters.callback_panics, 1);
                            log::error!("{peer}: callback panicked; closing this connection");
                            close = true;
                            break;
                        }
                    }
                    if conn.broken {
                        add(&counters.io_errors, 1);
                        log::warn!("{peer}: reply write failed or timed out, closing");
                        close = true;
                        break;
                    }
                }
                Some(Event::Skipped(len)) => {
                    if let (Some(s), Some(d)) = (session.as_deref_mut(), delivery) {
                        s.delivered = d.seq;
                    }
                    add(&counters.skipped_frames, 1);
                    skipped += 1;
                    log::warn!("{peer}: skipped a {len}-byte message over the maximum");
                }
                Some(_) | None => {}
            }
        }
        add(&counters.messages_in, messages);
        add(&counters.bytes_in, bytes);
        add(&counters.duplicates_dropped, duplicates);
        // A cumulative acknowledgement after the callbacks returned: every `ACK_EVERY`
        // messages while the writer streams, else once nothing more came for `ACK_DELAY`
        // (checked before the next read).
        let delivered = session.take().map(|s| s.delivered);
        if let Some(d) = delivered {
            if acked.unacknowledged(d) >= ACK_EVERY || !CAN_WAIT {
                conn.acknowledge(&mut acked, d);
                ack_pending = false;
            } else {
                ack_pending = acked.unacknowledged(d) > 0;
            }
        }
        if close {
            break;
        }
        if let Err(e) = conn.flush() {
            add(&counters.io_errors, 1);
            log::warn!("{peer}: reply failed: {e}");
            break;
        }
        if messages > 0 {
            activity.completed(shared.clock(now));
        }
        activity.set_busy(false);
        // A skipped oversize frame is a frame completed too (under `Oversize::Skip`).
        let mid = decoder.is_mid_frame() || acked.mid_hello();
        deadlines.after_read(now, mid, messages + skipped > 0);
        // A peer that trickles a frame in never lets the read time out: check here too.
        if over_deadline(&mut deadlines, now, &stream, &config, &shared, peer) {
            break;
        }
        if shared.stopping() {
            drain += 1;
            if drain > DRAIN_READS {
                break;
            }
        }
    }
    activity.set_busy(false);
    if ack_pending && let Some(d) = acked.delivered() {
        conn.acknowledge(&mut acked, d);
    }
    let _ = conn.flush();
    shared.registry().remove(id);
    sub(&counters.connections_open, 1);
    shared.slot_freed.notify_all();
    log::debug!("{peer}: connection closed");
}

/// Whether the connection must close at `now`: a deadline passed (counted and logged), or
/// the socket's read timeout could not be set to the next one.
fn over_deadline(
    deadlines: &mut Deadlines,
    now: Instant,
    stream: &TcpStream,
    config: &ListenerConfig,
    shared: &Shared,
    peer: SocketAddr,
) -> bool {
    match deadlines.expired(now) {
        Some(Expired::Idle) => {
            add(&shared.counters.idle_timeouts, 1);
            log::info!(
                "{peer}: idle for {:?}, closing",
                config.idle_timeout().unwrap_or_default()
            );
            true
        }
        Some(Expired::Frame) => {
            add(&shared.counters.frame_timeouts, 1);
            log::warn!(
                "{peer}: a frame not completed within {:?}, closing",
                config.frame_timeout().unwrap_or_default()
            );
            true
        }
        None => match deadlines
            .next_timeout(now)
            .map(|t| stream.set_read_timeout(t))
        {
            Some(Err(e)) => {
                add(&shared.counters.io_errors, 1);
                log::warn!("{peer}: cannot set the read timeout: {e}");
                true
            }
            Some(Ok(())) | None => false,
        },
    }
}

impl<H> Drop for Connection<H> {
    fn drop(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

//! One connection's thread: read a chunk, decode it, hand every message to the callback,
//! write the replies (and, in the acknowledged mode, what the connection's `Receiver` says to
//! send back), and end the connection at a deadline, an error or shutdown.

use std::io::{self, Read};
use std::net::{SocketAddr, TcpStream};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::{Duration, Instant};

use buffstreams_framing::{Decoder, Event, LengthPrefix};

use super::Handler;
use super::acked::{AckedConn, Opening};
use super::config::ListenerConfig;
use super::connection::Connection;
use super::deadline::{Deadlines, Expired};
use super::shared::{Activity, Shared};
use crate::stats::{add, sub};
use crate::sync::relock;

/// Reads after shutdown starts are bounded, so a peer that never stops sending cannot hold
/// the listener open.
const DRAIN_READS: u32 = 64;

/// Whether this platform can wait for data with a timeout ([`ready_within`]); where it
/// cannot, every chunk is acknowledged at once.
const CAN_WAIT: bool = cfg!(target_os = "linux");

/// What one chunk brought, counted per chunk: connection threads share the counters.
#[derive(Default)]
struct Tally {
    messages: u64,
    bytes: u64,
    skipped: u64,
}

/// Everything one connection's thread owns: the reading side, and what calls back.
struct Conn<H: LengthPrefix> {
    id: u64,
    stream: Arc<TcpStream>,
    activity: Arc<Activity>,
    config: ListenerConfig,
    decoder: Decoder<H, Vec<u8>>,
    deadlines: Deadlines,
    /// The last read filled half the buffer or more: the peer streams.
    streaming: bool,
    drain: u32,
    calls: Calls<H>,
    /// Plaintext taken out of TLS records (empty without TLS).
    #[cfg(feature = "tls")]
    plain: Vec<u8>,
}

/// What a message goes through once decoded: its number in the acknowledged mode, the
/// callback, the replies and acknowledgements queued on the connection.
struct Calls<H: LengthPrefix> {
    peer: SocketAddr,
    conn: Connection<H>,
    shared: Arc<Shared>,
    handler: Arc<Handler<H>>,
    acked: Option<AckedConn>,
}

pub(super) fn connection<H: LengthPrefix>(
    id: u64,
    stream: Arc<TcpStream>,
    conn: Connection<H>,
    activity: Arc<Activity>,
    config: ListenerConfig,
    shared: Arc<Shared>,
    handler: Arc<Handler<H>>,
) {
    let acked = config
        .acks()
        .then(|| AckedConn::new(id, config.ack_delay(), config.ack_every()));
    let now = Instant::now();
    let mut deadlines = Deadlines::new(config.idle_timeout(), config.frame_timeout(), now);
    if config.is_tls() {
        // A TLS client speaks first, at once: the handshake is a frame from the accept on.
        deadlines.after_read(now, true, false);
    }
    let mut c = Conn {
        id,
        stream,
        activity,
        decoder: Decoder::new(config.framing(), Vec::new()),
        deadlines,
        config,
        streaming: false,
        drain: 0,
        calls: Calls {
            peer: conn.peer_addr(),
            conn,
            shared,
            handler,
            acked,
        },
        #[cfg(feature = "tls")]
        plain: Vec::new(),
    };
    if c.config.is_tls() && c.over_deadline(now) {
        return c.finish();
    }
    let mut buf = vec![0u8; c.config.read_buffer()];
    while c.round(&mut buf) {}
    c.finish();
}

impl<H: LengthPrefix> Conn<H> {
    /// One read and what it brought; `false` when the connection ends.
    fn round(&mut self, buf: &mut [u8]) -> bool {
        let Some(read) = self.read(buf) else {
            return false;
        };
        self.streaming = read.as_ref().is_ok_and(|&n| n >= buf.len() / 2);
        let now = Instant::now();
        let (peer, counters) = (self.calls.peer, &self.calls.shared.counters);
        match read {
            Ok(0) => {
                self.peer_closed();
                false
            }
            Ok(n) => self.arrived(buf.get(..n).unwrap_or_default(), now),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => true,
            // Either a deadline passed, or the read woke before it (the timeout is rounded
            // down) and waits again for what is left.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                !self.over_deadline(now)
            }
            Err(_) if self.activity.ended_by_us() => false,
            Err(e) => {
                add(&counters.io_errors, 1);
                log::warn!("{peer}: read failed: {e}");
                false
            }
        }
    }

    /// The next read. While an acknowledgement is pending it waits for data only until the
    /// acknowledgement is due (busy polling first while the writer streams), then sends it;
    /// `None` when that send failed.
    fn read(&mut self, buf: &mut [u8]) -> Option<io::Result<usize>> {
        let busy = self.config.busy_poll();
        if let Some(wait) = self.calls.ack_wait() {
            let shared = &self.calls.shared;
            if self.streaming
                && let Some(read) =
                    shared
                        .pollers
                        .poll(&self.stream, buf, busy, &shared.counters.polled_reads)
            {
                return Some(read);
            }
            if !ready_within(&self.stream, wait) {
                // Nothing came: the writer may be waiting for this acknowledgement.
                self.calls.acknowledge(Instant::now());
                if self.calls.conn.flush().is_err() {
                    add(&self.calls.shared.counters.io_errors, 1);
                    return None;
                }
            }
        }
        let shared = &self.calls.shared;
        Some(if self.streaming {
            shared
                .pollers
                .read(&self.stream, buf, busy, &shared.counters.polled_reads)
        } else {
            (&*self.stream).read(buf)
        })
    }

    /// The peer ended its stream: a frame it left unfinished is counted and dropped.
    fn peer_closed(&self) {
        if !self.activity.ended_by_us() && self.decoder.is_mid_frame() {
            add(&self.calls.shared.counters.truncated, 1);
            log::info!(
                "{}: closed inside a frame; the partial frame is dropped",
                self.calls.peer
            );
        }
    }

    /// What one read brought: messages, or under TLS records to open first.
    fn arrived(&mut self, input: &[u8], now: Instant) -> bool {
        #[cfg(feature = "tls")]
        if self.calls.conn.tls.is_some() {
            return self.records(input, now);
        }
        self.chunk(input, now)
    }

    /// TLS records: the handshake's, or messages sealed in them, which go to [`chunk`]
    /// (`Self::chunk`) as they are opened; `false` when the connection ends.
    #[cfg(feature = "tls")]
    fn records(&mut self, input: &[u8], now: Instant) -> bool {
        // `input` is ciphertext; rustls takes it as it can, between the plaintext it opens.
        use crate::tls::Taken;
        let mut plain = std::mem::take(&mut self.plain);
        if plain.is_empty() {
            // Zeroed by the allocator (`calloc`): pages become resident only as plaintext
            // fills them, so a connection still in its handshake costs little memory.
            plain = vec![0; self.config.read_buffer().max(16 * 1024)];
        }
        let mut input = input;
        let mut opened = false;
        let open = loop {
            let Some(tls) = self.calls.conn.tls.as_ref() else {
                break false;
            };
            let taken = tls.take(&self.stream, &mut input, &mut plain);
            match taken {
                Ok(Taken::Data(n)) => {
                    opened = true;
                    if !self.chunk(plain.get(..n).unwrap_or_default(), now) {
                        break false;
                    }
                }
                Ok(Taken::Closed) => {
                    // close_notify: the end of the stream, as a TCP close is.
                    self.peer_closed();
                    break false;
                }
                Ok(Taken::More) => break true,
                Err(e) => {
                    self.tls_failed(&e);
                    break false;
                }
            }
        };
        self.plain = plain;
        if open && !opened {
            // The handshake moved on, or part of a record came: inside a frame either way.
            let mid = self.is_mid();
            self.deadlines.after_read(now, mid, false);
            return !self.over_deadline(now);
        }
        open
    }

    /// A TLS failure: counted, logged with its reason; the connection ends.
    #[cfg(feature = "tls")]
    fn tls_failed(&self, e: &io::Error) {
        let counters = &self.calls.shared.counters;
        match crate::tls::tls_error(e) {
            Some(t) => {
                add(&counters.tls_errors, 1);
                log::warn!("{}: TLS: {t}; closing", self.calls.peer);
            }
            None => {
                add(&counters.io_errors, 1);
                log::warn!("{}: TLS write failed: {e}; closing", self.calls.peer);
            }
        }
    }

    /// Whether the peer is inside a frame: a message cut, the acknowledged mode's hello cut,
    /// or (under TLS) the handshake or a record.
    fn is_mid(&self) -> bool {
        self.decoder.is_mid_frame()
            || self
                .calls
                .acked
                .as_ref()
                .is_some_and(AckedConn::is_mid_hello)
            || self.calls.conn.tls_mid()
    }

    /// Everything one read brought; `false` when the connection ends. Inlined by force: with
    /// a second caller (TLS records) LLVM stopped inlining it into the read loop, and the
    /// plain listener's thread took 13.7 ns of CPU per message instead of 8 (bench, 110 B).
    #[inline(always)]
    fn chunk(&mut self, input: &[u8], now: Instant) -> bool {
        self.activity.set_busy(true);
        let mut tally = Tally::default();
        let open = self.messages(input, &mut tally);
        let counters = &self.calls.shared.counters;
        add(&counters.messages_in, tally.messages);
        add(&counters.bytes_in, tally.bytes);
        // After the callbacks returned: an acknowledgement now if one is due (or where this
        // platform cannot wait for quiet), else after the next read's wait.
        self.calls
            .acknowledge(if CAN_WAIT { now } else { far_future(now) });
        if !open {
            return false;
        }
        if let Err(e) = self.calls.conn.flush() {
            add(&self.calls.shared.counters.io_errors, 1);
            log::warn!("{}: reply failed: {e}", self.calls.peer);
            return false;
        }
        let shared = &self.calls.shared;
        if tally.messages > 0 {
            self.activity.completed(shared.clock(now));
        }
        self.activity.set_busy(false);
        // A skipped oversize frame is a frame completed too (under `Oversize::Skip`).
        let mid = self.is_mid();
        self.deadlines
            .after_read(now, mid, tally.messages + tally.skipped > 0);
        // A peer that trickles a frame in never lets the read time out: check here too.
        if self.over_deadline(now) {
            return false;
        }
        if self.calls.shared.stopping() {
            self.drain += 1;
            return self.drain <= DRAIN_READS;
        }
        true
    }

    /// Decodes `input` and hands every message to the callback; `false` when the connection
    /// must end.
    fn messages(&mut self, mut input: &[u8], tally: &mut Tally) -> bool {
        let calls = &mut self.calls;
        if let Some(acked) = calls.acked.as_mut()
            && !acked.is_open()
        {
            let wait = self
                .config
                .frame_timeout()
                .unwrap_or(Duration::from_secs(10));
            match acked.start(input, &calls.shared, wait) {
                Ok(Opening::More) => return true,
                Ok(Opening::Open { welcome, rest }) => {
                    input = rest;
                    if calls.conn.control(&welcome).is_err() {
                        return false;
                    }
                }
                Err(e) if e.is_stale() => {
                    // A late hello of a writer that has moved on to a newer connection.
                    add(&calls.shared.counters.superseded, 1);
                    log::info!("{}: {e}; closing", calls.peer);
                    return false;
                }
                Err(e) => {
                    add(&calls.shared.counters.handshake_errors, 1);
                    log::warn!("{}: {e}; closing", calls.peer);
                    return false;
                }
            }
        }
        while !input.is_empty() {
            let fed = match self.decoder.feed(input) {
                Ok(fed) => fed,
                Err(e) => {
                    calls.protocol_error(&e);
                    return false;
                }
            };
            input = input.get(fed.consumed..).unwrap_or_default();
            match fed.event {
                Some(Event::Frame(message)) => {
                    if !calls.deliver(message, tally) {
                        return false;
                    }
                }
                Some(Event::Skipped(len)) => {
                    calls.skipped(len);
                    tally.skipped += 1;
                }
                Some(_) | None => {}
            }
        }
        true
    }

    /// Whether the connection must close at `now`: a deadline passed (counted and logged),
    /// or the socket's read timeout could not be set to the next one.
    fn over_deadline(&mut self, now: Instant) -> bool {
        let (peer, counters) = (self.calls.peer, &self.calls.shared.counters);
        match self.deadlines.expired(now) {
            Some(Expired::Idle) => {
                add(&counters.idle_timeouts, 1);
                log::info!(
                    "{peer}: idle for {:?}, closing",
                    self.config.idle_timeout().unwrap_or_default()
                );
                true
            }
            Some(Expired::Frame) => {
                add(&counters.frame_timeouts, 1);
                log::warn!(
                    "{peer}: a frame not completed within {:?}, closing",
                    self.config.frame_timeout().unwrap_or_default()
                );
                true
            }
            None => match self
                .deadlines
                .next_timeout(now)
                .map(|t| self.stream.set_read_timeout(t))
            {
                Some(Err(e)) => {
                    add(&counters.io_errors, 1);
                    log::warn!("{peer}: cannot set the read timeout: {e}");
                    true
                }
                Some(Ok(())) | None => false,
            },
        }
    }

    /// The connection ends: the last acknowledgement and replies go out, the session (in the
    /// acknowledged mode) goes back to the table, the slot is freed.
    fn finish(mut self) {
        self.activity.set_busy(false);
        let calls = &mut self.calls;
        if let Some(ack) = calls.acked.as_mut().and_then(AckedConn::last_ack)
            && calls.conn.control(&ack).is_ok()
        {
            add(&calls.shared.counters.acks_out, 1);
        }
        let _ = calls.conn.flush();
        let shared = &calls.shared;
        if let Some(acked) = calls.acked.as_mut() {
            acked.close(shared);
        }
        shared.registry().remove(self.id);
        sub(&shared.counters.connections_open, 1);
        shared.slot_freed.notify_all();
        log::debug!("{}: connection closed", calls.peer);
    }
}

impl<H: LengthPrefix> Calls<H> {
    /// Numbers the message (acknowledged mode) and calls back; `false` when the connection
    /// must end (the callback panicked, or a reply could not be written).
    #[inline]
    fn deliver(&mut self, message: &[u8], tally: &mut Tally) -> bool {
        let delivery = self.acked.as_mut().and_then(AckedConn::number);
        self.conn.delivery = delivery;
        let handler = &self.handler;
        let called = catch_unwind(AssertUnwindSafe(|| handler(message, &mut self.conn)));
        let counters = &self.shared.counters;
        match called {
            Ok(result) => {
                // The callback returned: in the acknowledged mode the message is delivered.
                if let (Some(a), Some(d)) = (self.acked.as_mut(), delivery) {
                    a.delivered(d, message.len());
                }
                tally.messages += 1;
                tally.bytes += message.len() as u64;
                if let Err(e) = result {
                    add(&counters.callback_errors, 1);
                    log::warn!("{}: callback error: {e}", self.peer);
                }
            }
            Err(_) => {
                add(&counters.callback_panics, 1);
                log::error!("{}: callback panicked; closing this connection", self.peer);
                return false;
            }
        }
        if self.conn.broken {
            add(&counters.io_errors, 1);
            log::warn!("{}: reply write failed or timed out, closing", self.peer);
            return false;
        }
        true
    }

    /// An oversize message skipped under `Oversize::Skip`: it keeps its number (the policy
    /// is the application's choice to drop it).
    fn skipped(&mut self, len: u64) {
        if let Some(a) = self.acked.as_mut()
            && let Some(d) = a.number()
        {
            a.delivered(d, usize::try_from(len).unwrap_or(usize::MAX));
        }
        add(&self.shared.counters.skipped, 1);
        log::warn!(
            "{}: skipped a {len}-byte message over the maximum",
            self.peer
        );
    }

    /// Queues the acknowledgement due at `now`, if one is.
    fn acknowledge(&mut self, now: Instant) {
        if let Some(ack) = self
            .acked
            .as_mut()
            .and_then(|a| a.poll_ack(&self.shared, now))
            && self.conn.control(&ack).is_ok()
        {
            add(&self.shared.counters.acks_out, 1);
        }
    }

    /// How long until a pending acknowledgement is due, if one is.
    fn ack_wait(&self) -> Option<Duration> {
        self.acked
            .as_ref()
            .and_then(|a| a.ack_wait(&self.shared, Instant::now()))
    }

    fn protocol_error(&self, e: &buffstreams_framing::DecodeError) {
        add(&self.shared.counters.protocol_errors, 1);
        log::warn!("{}: protocol error, closing: {e}", self.peer);
        let hook = relock(&self.shared.on_protocol_error).clone();
        if let Some(hook) = hook {
            let _ = catch_unwind(AssertUnwindSafe(|| hook(self.peer, e)));
        }
    }
}

/// A time by which any acknowledgement is due.
fn far_future(now: Instant) -> Instant {
    now + Duration::from_secs(3600)
}

/// Whether data (or the end of the stream) arrives within `wait`.
fn ready_within(stream: &TcpStream, wait: Duration) -> bool {
    #[cfg(target_os = "linux")]
    {
        use rustix::event::{PollFd, PollFlags, Timespec, poll};
        let mut fds = [PollFd::new(stream, PollFlags::IN)];
        let timeout = Timespec {
            tv_sec: i64::try_from(wait.as_secs()).unwrap_or(i64::MAX),
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

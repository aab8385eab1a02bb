//! The writer: BuffStreams' `Dial` + `Write`, buffered, shared between threads, reconnecting.
//!
//! # Delivery
//! `write` copies the framed message into a buffer of the calling thread's own (a "lane", see
//! `lane.rs`), without a lock. A lane that fills up (64 KiB) is written to the socket by the
//! thread that filled it, like a `BufWriter`. A flusher thread sends the rest: a message
//! written after a pause at once (the writing thread wakes it), small bursts as they come, so
//! that batches grow only under load; and the tail of a thread that streams (writes faster
//! than the flusher can look) once its lane stops growing: looked at after 100 µs, then at
//! intervals that back off to [`WriterConfig::linger`] (default 5 ms) while it streams.
//! [`Writer::flush`] returns when everything written before it has been handed to the kernel
//! (or to the dead-letter queue).
//!
//! When the connection breaks, the writer reconnects under its [`RetryPolicy`] and sends again
//! every message the kernel had not fully taken; messages it cannot deliver within the policy
//! go to the dead-letter callback or queue, never nowhere. Before a batch that follows a pause
//! (100 µs without one) it checks whether the peer has closed the connection, so a listener
//! that was shut down and restarted loses nothing. What stays in doubt: messages the kernel
//! had fully accepted when the peer closed or reset the connection (they sat in the socket's
//! send buffer, or were written while streaming after the peer had closed); those in the
//! failing batch are counted in [`WriterStats::in_doubt`].

use std::io::{self, Write};
use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::atomic::{
    AtomicBool,
    Ordering::{Acquire, Relaxed, Release, SeqCst},
};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use buffstreams_framing::{BigEndian, Config, Encoder, Frames, LengthPrefix};

use crate::error::{Error, resolve};
use crate::lane::{Appended, Lane, Lanes, Waker, barrier};
use crate::stats::{WriterCounters, WriterStats, add};

/// Called with the payload of every message that could not be delivered.
pub type DeadLetterFn = dyn Fn(&[u8]) + Send + Sync;

/// Reconnect policy: exponential backoff with jitter, bounded in attempts and time.
///
/// Defaults: 8 attempts, 20 ms doubling up to 2 s, "equal jitter" (a random wait between half
/// and all of the backoff), 10 s deadline per undelivered batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    max_attempts: u32,
    initial_backoff: Duration,
    max_backoff: Duration,
    deadline: Option<Duration>,
    jitter: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_secs(2),
            deadline: Some(Duration::from_secs(10)),
            jitter: true,
        }
    }
}

impl RetryPolicy {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }
    /// One attempt, no waiting: undeliverable messages go to the dead-letter queue at once.
    pub fn never() -> Self {
        Self {
            max_attempts: 1,
            deadline: Some(Duration::ZERO),
            ..Self::default()
        }
    }
    /// Connection attempts (and write failures) per batch before its messages are dead-lettered.
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n.max(1);
        self
    }
    /// First wait; it doubles after every failure up to `max`.
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.initial_backoff = initial;
        self.max_backoff = max.max(initial);
        self
    }
    /// Give up on a batch this long after its first failure (`None`: attempts only).
    pub fn deadline(mut self, deadline: Option<Duration>) -> Self {
        self.deadline = deadline;
        self
    }
    /// Randomise each wait between half and all of the backoff (default on), so many writers
    /// do not reconnect in lockstep.
    pub fn jitter(mut self, on: bool) -> Self {
        self.jitter = on;
        self
    }

    fn wait_after(&self, failures: u32) -> Duration {
        let factor = 1u32
            .checked_shl(failures.saturating_sub(1))
            .unwrap_or(u32::MAX);
        let base = self
            .initial_backoff
            .saturating_mul(factor)
            .min(self.max_backoff);
        if self.jitter && !base.is_zero() {
            let half = base / 2;
            half + Duration::from_nanos(fastrand::u64(0..=(base - half).as_nanos() as u64))
        } else {
            base
        }
    }
}

/// Writer settings. Defaults: max message 4096 bytes, TCP_NODELAY on, [`RetryPolicy::default`],
/// 3 s connect timeout, 30 s write timeout, 4 MiB of buffers (64 KiB per writing thread),
/// 5 ms linger, dead letters kept in a queue.
#[derive(Clone)]
pub struct WriterConfig {
    framing: Config,
    nodelay: bool,
    retry: RetryPolicy,
    connect_timeout: Duration,
    write_timeout: Option<Duration>,
    max_buffer: usize,
    linger: Duration,
    dead_letter: Option<Arc<DeadLetterFn>>,
}

impl Default for WriterConfig {
    fn default() -> Self {
        Self {
            framing: Config::new(),
            nodelay: true,
            retry: RetryPolicy::default(),
            connect_timeout: Duration::from_secs(3),
            write_timeout: Some(Duration::from_secs(30)),
            max_buffer: 4 << 20,
            linger: Duration::from_millis(5),
            dead_letter: None,
        }
    }
}

impl std::fmt::Debug for WriterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriterConfig")
            .field("framing", &self.framing)
            .field("nodelay", &self.nodelay)
            .field("retry", &self.retry)
            .field("connect_timeout", &self.connect_timeout)
            .field("write_timeout", &self.write_timeout)
            .field("max_buffer", &self.max_buffer)
            .field("linger", &self.linger)
            .field(
                "dead_letter",
                &self.dead_letter.as_ref().map(|_| "callback"),
            )
            .finish()
    }
}

impl WriterConfig {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }
    /// Largest message `write` accepts (default 4096); longer ones are an [`Error::Encode`].
    pub fn max_message_size(mut self, max: usize) -> Self {
        self.framing = self.framing.with_max_frame_len(max);
        self
    }
    /// The whole framing configuration at once.
    pub fn framing(mut self, framing: Config) -> Self {
        self.framing = framing;
        self
    }
    /// TCP_NODELAY (default on: the writer batches by itself).
    pub fn nodelay(mut self, on: bool) -> Self {
        self.nodelay = on;
        self
    }
    /// The reconnect policy.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }
    /// Timeout of each connection attempt.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout.max(Duration::from_millis(1));
        self
    }
    /// A socket write that makes no progress for this long counts as a broken connection
    /// (default 30 s; `None`: wait for a peer that stopped reading forever).
    pub fn write_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.write_timeout = timeout.filter(|d| !d.is_zero());
        self
    }
    /// Memory for buffered messages (default 4 MiB): `bytes / 64 KiB` buffers of 64 KiB (at
    /// least two, smaller then). Threads writing through the writer get one of their own
    /// while they last; the last one is shared by the remaining threads, under a lock. A
    /// thread whose buffer is full sends it before queueing more: that is the backpressure.
    pub fn max_buffer(mut self, bytes: usize) -> Self {
        self.max_buffer = bytes.max(1);
        self
    }
    /// The longest a streaming thread's last messages wait once it stops (default 5 ms). The
    /// flusher first looks 100 µs after it saw the thread streaming (the tail of a short
    /// burst goes out then), and backs off to `linger` while the thread keeps streaming: each
    /// look is a timed wake-up that costs the writing thread throughput. A message written
    /// after a pause is sent at once whatever this is, full 64 KiB buffers go out at once,
    /// and `flush` or `send` send at once.
    pub fn linger(mut self, linger: Duration) -> Self {
        self.linger = linger.max(Duration::from_micros(1));
        self
    }
    /// Hands each undeliverable message to `f` instead of the queue that
    /// [`Writer::take_dead_letters`] drains.
    pub fn dead_letter(mut self, f: impl Fn(&[u8]) + Send + Sync + 'static) -> Self {
        self.dead_letter = Some(Arc::new(f));
        self
    }
}

struct Shared<H> {
    addr: SocketAddr,
    config: WriterConfig,
    encoder: Encoder<H>,
    lanes: Lanes,
    waker: Arc<Waker>,
    closed: AtomicBool,
    conn: Mutex<Link>,
    counters: WriterCounters,
    dead: Mutex<Vec<Vec<u8>>>,
    /// Dead letters wait in `dead` for the callback.
    dead_waiting: AtomicBool,
}

/// The connection and when a batch last went out on it.
struct Link {
    stream: Option<TcpStream>,
    last_batch: Instant,
}

/// A lane that grew by this many messages between two looks of the flusher is streaming:
/// its owner sends the full buffers, the flusher only its tail.
const STREAMING: u64 = 64;

/// What the flusher saw of a lane at its last look.
#[derive(Clone, Copy, Default)]
struct Seen {
    messages: u64,
    committed: usize,
    pending: bool,
    /// Left for its owner to send (streaming).
    hot: bool,
}

/// The flusher's first look at a streaming lane, after which the looks back off to `linger`.
const FIRST_LOOK: Duration = Duration::from_micros(100);

/// A batch that follows a pause this long first checks whether the peer has closed.
const QUIET: Duration = Duration::from_micros(100);

fn relock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing here can panic while holding a lock; if user code did, the data is still valid.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A connection to one listener, safe to share between threads (`Arc<Writer>` or `&Writer`).
/// Dropping it flushes what is buffered and joins its flusher thread.
///
/// Each thread writing through it fills a buffer of its own (64 KiB; as many as
/// [`WriterConfig::max_buffer`] allows, then one shared buffer), so concurrent writers do not
/// contend per message; a full buffer is sent by the thread that filled it. Messages from one
/// thread arrive in the order it wrote them.
///
/// # Examples
/// ```no_run
/// use buffstreams_transport_std::{Writer, WriterConfig};
///
/// let writer: Writer = Writer::dial("127.0.0.1:5031", WriterConfig::new())?;
/// let n = writer.write(b"hello")?; // 9: a 4-byte header and the payload
/// writer.flush()?;                 // optional: an idle writer sends at once anyway
/// # Ok::<(), buffstreams_transport_std::Error>(())
/// ```
pub struct Writer<H: LengthPrefix + Send + 'static = BigEndian<4>> {
    shared: Arc<Shared<H>>,
    flusher: Option<JoinHandle<()>>,
    _format: PhantomData<fn() -> H>,
}

impl<H: LengthPrefix + Send + 'static> std::fmt::Debug for Writer<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("peer", &self.shared.addr)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl<H: LengthPrefix + Send + 'static> Writer<H> {
    /// Connects to `addr` (retrying under the policy) and starts the flusher thread.
    ///
    /// # Errors
    /// [`Error::Io`] when no connection could be made within the retry policy.
    pub fn dial(
        addr: impl ToSocketAddrs + std::fmt::Debug,
        config: WriterConfig,
    ) -> Result<Self, Error> {
        let addr = resolve(addr)?;
        barrier::init();
        let waker = Arc::new(Waker::default());
        let shared = Arc::new(Shared {
            addr,
            encoder: Encoder::<H>::new(config.framing),
            lanes: Lanes::new(config.max_buffer, waker.clone()),
            config,
            waker,
            closed: AtomicBool::new(false),
            conn: Mutex::new(Link {
                stream: None,
                last_batch: Instant::now(),
            }),
            counters: WriterCounters::default(),
            dead: Mutex::new(Vec::new()),
            dead_waiting: AtomicBool::new(false),
        });
        let mut failures = 0;
        let stream = shared.connect(Instant::now(), &mut failures)?;
        relock(&shared.conn).stream = Some(stream);
        log::info!("writer {addr}: connected");
        let s = shared.clone();
        let flusher = thread::Builder::new()
            .name(format!("bs-flush-{addr}"))
            .spawn(move || s.flusher())?;
        shared.waker.set(flusher.thread().clone());
        Ok(Self {
            shared,
            flusher: Some(flusher),
            _format: PhantomData,
        })
    }

    /// Queues one message; returns its size on the wire, header included. A message written
    /// to an idle writer is sent at once by the flusher thread; under load messages coalesce
    /// into writes of up to 64 KiB, which the writing thread makes itself when its buffer is
    /// full (that is where `write` blocks when the peer reads slower than we write).
    ///
    /// # Errors
    /// [`Error::Encode`] for a message over the maximum (nothing queued).
    pub fn write(&self, message: &[u8]) -> Result<usize, Error> {
        let s = &*self.shared;
        let header = s.encoder.header(message.len())?;
        if let Some(lane) = s.lanes.try_append_one(&header, message) {
            s.wake_if_asked(lane);
            return Ok(header.len() + message.len());
        }
        let (appended, lane) =
            s.lanes
                .append([message], |_| Ok(header), |bytes: &[u8]| s.send(bytes))?;
        s.appended(lane, appended, true);
        Ok(appended.bytes)
    }

    /// Queues several messages at once; returns their size on the wire. Messages from other
    /// threads never land between the bytes of one message, and the messages of one batch
    /// stay together.
    ///
    /// # Errors
    /// As [`write`](Self::write); a message over the maximum fails the whole batch before any
    /// of it is queued.
    pub fn write_batch<I>(&self, messages: I) -> Result<usize, Error>
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
    {
        self.queue(messages, true).map(|(n, _)| n)
    }

    /// Writes one message and sends it (with whatever this thread queued before) on the
    /// calling thread, no hand-off to the flusher: the request/response and "flush every
    /// message" path, like tokio's `SinkExt::send`. Returns its size on the wire.
    ///
    /// # Errors
    /// As [`write`](Self::write).
    pub fn send(&self, message: &[u8]) -> Result<usize, Error> {
        let s = &*self.shared;
        let (n, lane) = self.queue([message], false)?;
        lane.send_pending(|bytes| s.send(bytes));
        s.deliver_dead_letters();
        Ok(n)
    }

    /// Appends to this thread's lane; returns the bytes queued and the lane.
    fn queue<I>(&self, messages: I, wake: bool) -> Result<(usize, &Lane), Error>
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
    {
        let s = &*self.shared;
        let (appended, lane) = s.lanes.append(
            messages,
            |len| s.encoder.header(len),
            |bytes: &[u8]| s.send(bytes),
        )?;
        s.appended(lane, appended, wake);
        Ok((appended.bytes, lane))
    }

    /// Returns once every message written before this call (by any thread) has been handed to
    /// the kernel or to the dead-letter queue. The calling thread sends what is waiting.
    ///
    /// # Errors
    /// None today; the `Result` leaves room for flushing with a deadline.
    pub fn flush(&self) -> Result<(), Error> {
        self.shared.flush_all();
        Ok(())
    }

    /// Current counters.
    pub fn stats(&self) -> WriterStats {
        let mut stats = self.shared.counters.snapshot();
        // Counted per lane by its producer: no shared write per message.
        stats.messages_out = self.shared.lanes.iter().map(Lane::messages).sum();
        stats
    }

    /// The address this writer sends to.
    pub fn peer_addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// Takes the messages that could not be delivered (empty when a dead-letter callback is
    /// set: they went to it).
    pub fn take_dead_letters(&self) -> Vec<Vec<u8>> {
        if self.shared.config.dead_letter.is_some() {
            return Vec::new();
        }
        std::mem::take(&mut *relock(&self.shared.dead))
    }

    /// Flushes, stops the flusher and closes the connection; returns the final counters.
    pub fn close(mut self) -> WriterStats {
        self.shutdown();
        self.stats()
    }

    fn shutdown(&mut self) {
        self.shared.flush_all();
        self.shared.closed.store(true, Release);
        self.shared.waker.wake();
        if let Some(t) = self.flusher.take() {
            if t.join().is_err() {
                log::error!("writer {}: flusher thread panicked", self.shared.addr);
            }
        }
        if let Some(s) = relock(&self.shared.conn).stream.take() {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }
}

impl<H: LengthPrefix + Send + 'static> Drop for Writer<H> {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl<H: LengthPrefix> Shared<H> {
    /// After an append: wakes the flusher if it asked to hear about this lane (the lane was
    /// quiet, so this is a lone message or the start of a burst: it goes out at once), and
    /// hands over dead letters.
    #[inline]
    fn appended(&self, lane: &Lane, appended: Appended, wake: bool) {
        if wake && appended.messages > 0 {
            self.wake_if_asked(lane);
        }
        if appended.sent {
            self.deliver_dead_letters();
        }
    }

    #[inline]
    fn wake_if_asked(&self, lane: &Lane) {
        if lane.take_wake_request() {
            self.waker.wake();
        }
    }

    /// Sends what every lane holds, on the calling thread.
    fn flush_all(&self) {
        for (_, lane) in self.lanes.in_use() {
            lane.send_pending(|bytes| self.send(bytes));
        }
        self.deliver_dead_letters();
    }

    /// The flusher: sends a quiet lane's messages at once, and a busy lane's tail once it has
    /// stopped growing (its owner sends the full 64 KiB batches itself).
    fn flusher(&self) {
        // While a lane keeps streaming, the looks back off from `FIRST_LOOK` to `linger`: a
        // timed wake-up disturbs the sending thread (measured with the bench on the 2-core VM:
        // 1,100 wake-ups a second cost 5-15 % of one thread's throughput, 200 a second were
        // within the noise of no flusher at all).
        let linger = self.config.linger;
        let first = linger.min(FIRST_LOOK);
        let mut wait = first;
        let mut seen = vec![Seen::default(); self.lanes.iter().len()];
        loop {
            let closing = self.closed.load(Acquire);
            let mut hot = false;
            for (i, lane) in self.lanes.in_use() {
                let Some(seen) = seen.get_mut(i) else {
                    continue;
                };
                let released = lane.ticket.released.load(Acquire);
                let now = Seen {
                    messages: lane.messages(),
                    committed: lane.committed(),
                    pending: lane.has_pending(),
                    hot: false,
                };
                // Streaming: since the last look the owner added many messages, or sent a
                // full buffer itself. Its tail waits until it stops (`linger`); anything
                // else goes out now, so that batches grow only under load.
                let streaming = seen.pending
                    && (now.messages.wrapping_sub(seen.messages) >= STREAMING
                        || now.committed < seen.committed);
                let mut now = now;
                if now.pending && (closing || released || !streaming) {
                    lane.send_pending(|bytes| self.send(bytes));
                } else if now.pending {
                    now.hot = true;
                    hot = true;
                }
                if released {
                    lane.recycle();
                    log::debug!("writer {}: lane freed by an exited thread", self.addr);
                }
                *seen = now;
            }
            self.deliver_dead_letters();
            if closing {
                if !self.lanes.in_use().any(|(_, l)| l.has_pending()) {
                    return;
                }
                continue;
            }
            // Ask the quiet lanes for a wake-up; when newly asked, force out the producers'
            // last stores and look once more, so that no message slips between. A lane that
            // got messages since the look and is not streaming (so nobody will wake us for
            // it, and no timer is due) means looking again now.
            let mut asked = false;
            let mut fresh = false;
            for (i, lane) in self.lanes.in_use() {
                if lane.has_pending() {
                    fresh |= !seen.get(i).is_some_and(|s| s.hot);
                } else if !lane.wake_me.load(Relaxed) {
                    lane.wake_me.store(true, SeqCst);
                    asked = true;
                }
            }
            if fresh {
                continue;
            }
            let mut sure = true;
            if asked {
                sure = barrier::heavy();
                if self
                    .lanes
                    .in_use()
                    .any(|(_, l)| l.wake_me.load(Relaxed) && l.has_pending())
                {
                    continue;
                }
            }
            if hot {
                thread::park_timeout(wait);
                wait = (wait * 2).min(linger);
                continue;
            }
            wait = first;
            if sure {
                thread::park();
            } else {
                thread::park_timeout(Duration::from_millis(10));
            }
        }
    }

    /// Hands queued dead letters to the callback, outside every lock (it may write).
    #[inline]
    fn deliver_dead_letters(&self) {
        if self.dead_waiting.load(Relaxed) {
            self.deliver_dead_letters_now();
        }
    }

    #[cold]
    fn deliver_dead_letters_now(&self) {
        let Some(f) = &self.config.dead_letter else {
            return;
        };
        if !self.dead_waiting.swap(false, Acquire) {
            return;
        }
        let letters = std::mem::take(&mut *relock(&self.dead));
        for letter in &letters {
            f(letter);
        }
    }

    /// Writes one batch of whole frames, reconnecting and re-sending as the policy allows.
    fn send(&self, batch: &[u8]) {
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
                if conn.take().is_some() {
                    log::info!(
                        "writer {}: peer closed the connection, reconnecting",
                        self.addr
                    );
                }
                match self.connect(started, &mut failures) {
                    Ok(s) => {
                        add(&self.counters.reconnects, 1);
                        log::info!("writer {}: reconnected", self.addr);
                        *conn = Some(s);
                    }
                    Err(e) => {
                        let n = self.dead_letter(batch.get(off..).unwrap_or_default());
                        log::error!(
                            "writer {}: cannot reconnect ({e}); {n} messages dead-lettered",
                            self.addr
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
                    log::warn!(
                        "writer {}: write failed after {written} bytes: {e}",
                        self.addr
                    );
                    off = restart;
                    *conn = None;
                    failures += 1;
                    if self.out_of_budget(started, failures) {
                        let n = self.dead_letter(batch.get(off..).unwrap_or_default());
                        log::error!(
                            "writer {}: giving up; {n} messages dead-lettered",
                            self.addr
                        );
                        return;
                    }
                }
            }
        }
    }

    fn out_of_budget(&self, started: Instant, failures: u32) -> bool {
        let retry = &self.config.retry;
        failures >= retry.max_attempts || retry.deadline.is_some_and(|d| started.elapsed() >= d)
    }

    fn connect(&self, started: Instant, failures: &mut u32) -> io::Result<TcpStream> {
        loop {
            match TcpStream::connect_timeout(&self.addr, self.config.connect_timeout) {
                Ok(s) => {
                    s.set_nodelay(self.config.nodelay)?;
                    s.set_write_timeout(self.config.write_timeout)?;
                    return Ok(s);
                }
                Err(e) => {
                    add(&self.counters.connect_failures, 1);
                    *failures += 1;
                    if self.out_of_budget(started, *failures) {
                        return Err(e);
                    }
                    let mut wait = self.config.retry.wait_after(*failures);
                    if let Some(d) = self.config.retry.deadline {
                        wait = wait.min(d.saturating_sub(started.elapsed()));
                    }
                    log::debug!(
                        "writer {}: connect failed ({e}), retrying in {wait:?}",
                        self.addr
                    );
                    thread::sleep(wait);
                }
            }
        }
    }

    /// Walks the frames of `batch` from `from` (a frame start): returns the start of the frame
    /// that contains byte `upto`, and how many frames end at or before it.
    fn frame_boundary(&self, batch: &[u8], from: usize, upto: usize) -> (usize, u64) {
        let mut frames =
            Frames::<H>::new(self.config.framing, batch.get(from..).unwrap_or_default());
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

    fn dead_letter(&self, frames: &[u8]) -> u64 {
        let mut n = 0;
        let mut queue = relock(&self.dead);
        for payload in Frames::<H>::new(self.config.framing, frames) {
            let Ok(payload) = payload else {
                break;
            };
            queue.push(payload.to_vec());
            n += 1;
        }
        if n > 0 && self.config.dead_letter.is_some() {
            self.dead_waiting.store(true, Release);
        }
        add(&self.counters.dead_lettered, n);
        n
    }
}

/// Writes all of `bytes`, reporting how many were taken even on failure.
fn write_counting(stream: &mut TcpStream, bytes: &[u8]) -> (usize, io::Result<()>) {
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

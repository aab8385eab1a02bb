//! The writer: BuffStreams' `Dial` + `Write`, buffered, shared between threads, reconnecting.
//!
//! # Delivery
//! `write` copies the framed message into a shared buffer. A flusher thread writes whatever
//! has accumulated since its last write: an idle writer sends a message at once, a busy one
//! sends bigger batches. [`Writer::flush`] returns when everything written before it has been
//! handed to the kernel (or to the dead-letter queue).
//!
//! When the connection breaks, the writer reconnects under its [`RetryPolicy`] and sends again
//! every message the kernel had not fully taken; messages it cannot deliver within the policy
//! go to the dead-letter callback or queue, never nowhere. Before each batch it checks whether
//! the peer has closed the connection, so a listener that was shut down and restarted loses
//! nothing. What stays in doubt: messages the kernel had fully accepted when the peer reset the
//! connection (they sat in the socket's send buffer); those in the failing batch are counted in
//! [`WriterStats::in_doubt`].

use std::io::{self, Write};
use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use buffstreams_framing::{BigEndian, Config, Encoder, LengthPrefix, Parsed};

use crate::error::{Error, resolve};
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
/// 3 s connect timeout, 30 s write timeout, 4 MiB buffer before `write` blocks, dead letters
/// kept in a queue.
#[derive(Clone)]
pub struct WriterConfig {
    framing: Config,
    nodelay: bool,
    retry: RetryPolicy,
    connect_timeout: Duration,
    write_timeout: Option<Duration>,
    max_buffer: usize,
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
    /// Bytes buffered before `write` waits for the flusher (backpressure; default 4 MiB).
    pub fn max_buffer(mut self, bytes: usize) -> Self {
        self.max_buffer = bytes.max(1);
        self
    }
    /// Hands each undeliverable message to `f` instead of the queue that
    /// [`Writer::take_dead_letters`] drains.
    pub fn dead_letter(mut self, f: impl Fn(&[u8]) + Send + Sync + 'static) -> Self {
        self.dead_letter = Some(Arc::new(f));
        self
    }
}

/// A buffer this full is written by the thread that filled it.
const INLINE_BATCH: usize = 64 * 1024;

struct State {
    buf: Vec<u8>,
    spare: Vec<u8>,
    /// Messages accepted by `write`.
    queued: u64,
    /// Messages resolved: handed to the kernel or dead-lettered.
    done: u64,
    /// A batch is being written (by the flusher or an inline `flush`).
    busy: bool,
    closed: bool,
}

struct Shared<H> {
    addr: SocketAddr,
    config: WriterConfig,
    encoder: Encoder<H>,
    state: Mutex<State>,
    work: Condvar,
    progress: Condvar,
    conn: Mutex<Option<TcpStream>>,
    counters: WriterCounters,
    dead: Mutex<Vec<Vec<u8>>>,
}

fn relock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing here can panic while holding a lock; if user code did, the data is still valid.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A connection to one listener, safe to share between threads (`Arc<Writer>` or `&Writer`).
/// Dropping it flushes what is buffered and joins its flusher thread.
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
        let shared = Arc::new(Shared {
            addr,
            encoder: Encoder::<H>::new(config.framing),
            config,
            state: Mutex::new(State {
                buf: Vec::with_capacity(64 * 1024),
                spare: Vec::with_capacity(64 * 1024),
                queued: 0,
                done: 0,
                busy: false,
                closed: false,
            }),
            work: Condvar::new(),
            progress: Condvar::new(),
            conn: Mutex::new(None),
            counters: WriterCounters::default(),
            dead: Mutex::new(Vec::new()),
        });
        let mut failures = 0;
        let stream = shared.connect(Instant::now(), &mut failures)?;
        *relock(&shared.conn) = Some(stream);
        log::info!("writer {addr}: connected");
        let s = shared.clone();
        let flusher = thread::Builder::new()
            .name(format!("bs-flush-{addr}"))
            .spawn(move || s.flusher())?;
        Ok(Self {
            shared,
            flusher: Some(flusher),
            _format: PhantomData,
        })
    }

    /// Queues one message; returns its size on the wire, header included. The message is sent
    /// as soon as the flusher is free (at once when the writer was idle). Blocks while the
    /// buffer holds more than `max_buffer` bytes.
    ///
    /// # Errors
    /// [`Error::Encode`] for a message over the maximum (nothing queued), [`Error::Closed`].
    pub fn write(&self, message: &[u8]) -> Result<usize, Error> {
        self.write_batch([message])
    }

    /// Queues several messages at once (one lock for all); returns their size on the wire.
    /// Messages from other threads never land between the bytes of one message, and the
    /// messages of one batch stay together.
    ///
    /// # Errors
    /// As [`write`](Self::write); a message over the maximum fails the whole batch before any
    /// of it is queued.
    pub fn write_batch<I>(&self, messages: I) -> Result<usize, Error>
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
    {
        self.queue(messages, true)
    }

    /// Writes one message and flushes, on the calling thread when nothing else is writing
    /// (no wake-up of the flusher): the request/response and "flush every message" path, like
    /// tokio's `SinkExt::send`. Returns its size on the wire.
    ///
    /// # Errors
    /// As [`write`](Self::write).
    pub fn send(&self, message: &[u8]) -> Result<usize, Error> {
        let n = self.queue([message], false)?;
        self.flush()?;
        Ok(n)
    }

    fn queue<I>(&self, messages: I, wake: bool) -> Result<usize, Error>
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
    {
        let messages = messages.into_iter();
        let s = &*self.shared;
        let mut st = relock(&s.state);
        if st.closed {
            return Err(Error::Closed);
        }
        while st.buf.len() >= s.config.max_buffer && !st.closed {
            st = s.progress.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        let was_idle = st.buf.is_empty() && !st.busy;
        let start = st.buf.len();
        let (mut count, mut total) = (0u64, 0usize);
        for m in messages {
            let m = m.as_ref();
            let header = match s.encoder.header(m.len()) {
                Ok(h) => h,
                Err(e) => {
                    st.buf.truncate(start);
                    return Err(Error::Encode(e));
                }
            };
            st.buf.extend_from_slice(&header);
            st.buf.extend_from_slice(m);
            count += 1;
            total += header.len() + m.len();
        }
        st.queued += count;
        if st.buf.len() >= INLINE_BATCH && !st.busy {
            // Under load the caller writes full batches itself, as a `BufWriter` would: no
            // hand-off to another thread on the hot path.
            drop(s.write_out(st));
        } else {
            drop(st);
            if wake && was_idle && count > 0 {
                s.work.notify_one();
            }
        }
        Ok(total)
    }

    /// Returns once every message written before this call has been handed to the kernel or
    /// to the dead-letter queue. When nothing else is writing, the calling thread writes the
    /// buffer itself (no hand-off to the flusher).
    ///
    /// # Errors
    /// [`Error::Closed`] if the writer was closed meanwhile.
    pub fn flush(&self) -> Result<(), Error> {
        self.shared.flush_until_done()
    }

    /// Current counters.
    pub fn stats(&self) -> WriterStats {
        let mut stats = self.shared.counters.snapshot();
        // Kept under the buffer lock rather than in an atomic: one less shared write per message.
        stats.messages_out = relock(&self.shared.state).queued;
        stats
    }

    /// The address this writer sends to.
    pub fn peer_addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// Takes the messages that could not be delivered (when no dead-letter callback is set).
    pub fn take_dead_letters(&self) -> Vec<Vec<u8>> {
        std::mem::take(&mut *relock(&self.shared.dead))
    }

    /// Flushes, stops the flusher and closes the connection; returns the final counters.
    pub fn close(mut self) -> WriterStats {
        self.shutdown();
        self.stats()
    }

    fn shutdown(&mut self) {
        let _ = self.shared.flush_until_done();
        relock(&self.shared.state).closed = true;
        self.shared.work.notify_all();
        self.shared.progress.notify_all();
        if let Some(t) = self.flusher.take() {
            if t.join().is_err() {
                log::error!("writer {}: flusher thread panicked", self.shared.addr);
            }
        }
        if let Some(s) = relock(&self.shared.conn).take() {
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
    fn flusher(&self) {
        let mut st = relock(&self.state);
        loop {
            if !st.buf.is_empty() && !st.busy {
                st = self.write_out(st);
                continue;
            }
            if st.closed && st.buf.is_empty() && !st.busy {
                return;
            }
            st = self.work.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn flush_until_done(&self) -> Result<(), Error> {
        let mut st = relock(&self.state);
        let target = st.queued;
        loop {
            if st.done >= target {
                return Ok(());
            }
            if st.closed && st.buf.is_empty() && !st.busy {
                return Err(Error::Closed);
            }
            if !st.busy && !st.buf.is_empty() {
                st = self.write_out(st);
                continue;
            }
            st = self.progress.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Takes the buffer, writes it without holding the state lock, and records the progress.
    fn write_out<'a>(&'a self, mut st: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        let spare = std::mem::take(&mut st.spare);
        let mut batch = std::mem::replace(&mut st.buf, spare);
        let upto = st.queued;
        st.busy = true;
        drop(st);
        self.send(&batch);
        batch.clear();
        let mut st = relock(&self.state);
        st.spare = batch;
        st.done = upto;
        st.busy = false;
        if !st.buf.is_empty() || st.closed {
            self.work.notify_one();
        }
        self.progress.notify_all();
        st
    }

    /// Writes one batch of whole frames, reconnecting and re-sending as the policy allows.
    fn send(&self, batch: &[u8]) {
        let mut conn = relock(&self.conn);
        let mut off = 0usize;
        let mut failures = 0u32;
        let started = Instant::now();
        while off < batch.len() {
            let healthy = conn.as_ref().is_some_and(|s| !peer_closed(s));
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
        let mut at = from;
        let mut whole = 0;
        while at < upto {
            let Some(end) = self.frame_end(batch, at) else {
                break;
            };
            if end > upto {
                break;
            }
            at = end;
            whole += 1;
        }
        (at, whole)
    }

    /// End of the frame starting at `at` (we wrote every byte, so the headers are valid).
    fn frame_end(&self, batch: &[u8], at: usize) -> Option<usize> {
        let Ok(Parsed::Complete { value, header_len }) = H::parse(batch.get(at..)?) else {
            return None;
        };
        let value = usize::try_from(value).ok()?;
        let payload = if self.config.framing.length_includes_header() {
            value.checked_sub(header_len)?
        } else {
            value
        };
        at.checked_add(header_len)?.checked_add(payload)
    }

    fn dead_letter(&self, frames: &[u8]) -> u64 {
        let mut at = 0;
        let mut n = 0;
        let mut queue = relock(&self.dead);
        while let Some(end) = self.frame_end(frames, at) {
            let header_len = match H::parse(frames.get(at..).unwrap_or_default()) {
                Ok(Parsed::Complete { header_len, .. }) => header_len,
                _ => break,
            };
            let payload = frames.get(at + header_len..end).unwrap_or_default();
            match &self.config.dead_letter {
                Some(f) => f(payload),
                None => queue.push(payload.to_vec()),
            }
            n += 1;
            at = end;
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

/// Whether the peer has closed (FIN or reset) — one non-blocking peek, no data consumed.
fn peer_closed(stream: &TcpStream) -> bool {
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

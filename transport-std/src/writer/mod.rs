//! The writer: BuffStreams' `Dial` + `Write`, buffered, shared between threads, reconnecting.
//!
//! # Delivery
//! `write` copies the framed message into a buffer of the calling thread's own (a "lane", see
//! `lane/mod.rs`), without a lock. A lane that fills up (64 KiB) is written to the socket by the
//! thread that filled it, like a `BufWriter`. A flusher thread sends the rest: a message
//! written after a pause at once (the writing thread wakes it), small bursts as they come, so
//! that batches grow only under load; and the tail of a thread that streams (writes faster
//! than the flusher can look) once its lane stops growing: looked at after 100 µs, then at
//! intervals that back off to [`WriterConfig::with_linger`] (default 5 ms) while it streams.
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

mod acked;
mod barrier;
mod config;
mod connect;
mod deferred;
mod flusher;
mod handshake;
mod held;
mod io;
mod lane;
mod plain;
mod replies;
mod retry;
mod stream;
mod sync;

use std::marker::PhantomData;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::Release;
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Instant;

use buffstreams_framing::{BigEndian, Encoder, LengthPrefix};

use crate::error::{Error, resolve};
use crate::stats::{WriterCounters, WriterStats};
use crate::sync::relock;
use acked::Acked;
use buffstreams_framing::acked::{Epoch, plain_decoder_refuses_hello};
use lane::{Lane, Lanes, Sink, Waker};
use replies::Replies;
use stream::Stream;

pub use config::{DeadLetterFn, ReplyFn, WindowFull, WriterConfig};
pub use retry::RetryPolicy;

struct Shared<H> {
    addr: SocketAddr,
    config: WriterConfig,
    encoder: Encoder<H>,
    lanes: Lanes,
    waker: Arc<Waker>,
    closed: AtomicBool,
    conn: Mutex<Link>,
    counters: Arc<WriterCounters>,
    dead: Mutex<Vec<Vec<u8>>>,
    /// The reply threads of the connections so far (with `on_reply`).
    replies: Mutex<Vec<Replies>>,
    /// The acknowledged mode's machine.
    acked: Option<Arc<Acked<H>>>,
    /// Log lines from `send`, emitted once no lock is held.
    notes: Mutex<Vec<(log::Level, String)>>,
    /// Log lines wait in `notes`, or dead letters in `dead` for the callback.
    waiting: AtomicBool,
    /// The listener refused our certificate (or we its): no connection is tried again.
    #[cfg(feature = "tls")]
    tls_refused: std::sync::OnceLock<crate::tls::TlsError>,
}

/// The connection and when a batch last went out on it.
struct Link {
    stream: Option<Stream>,
    last_batch: Instant,
    /// The acknowledged mode's number of this connection.
    epoch: Epoch,
}

/// The largest lane: 64 KiB, one loopback segment (or TSO burst) per write. Under TLS the
/// records add up to 29 bytes each (4 records to a lane), so lanes hold 256 bytes less and a
/// lane's records still go out in one 64 KiB write (a write over it measured 40 % slower).
fn lane_cap(config: &WriterConfig) -> usize {
    if config.is_tls() {
        lane::LANE_CAP - 256
    } else {
        lane::LANE_CAP
    }
}

/// A connection to one listener, safe to share between threads (`Arc<Writer>` or `&Writer`).
/// Dropping it flushes what is buffered and joins its flusher thread.
///
/// Each thread writing through it fills a buffer of its own (64 KiB; as many as
/// [`WriterConfig::with_max_buffer`] allows, then one shared buffer), so concurrent writers do not
/// contend per message; a full buffer is sent by the thread that filled it. Messages from one
/// thread arrive in the order it wrote them.
///
/// # Examples
/// ```no_run
/// use buffstreams_transport_std::{Writer, WriterConfig};
///
/// let writer: Writer = Writer::dial("127.0.0.1:5031", WriterConfig::new())?;
/// let n = writer.write(b"hello")?; // 9: a 4-byte header and the payload
/// writer.flush();                  // optional: an idle writer sends at once anyway
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
        let lanes = Lanes::with_cap(config.max_buffer(), lane_cap(&config), waker.clone());
        let acked = config
            .acks()
            .then(|| Arc::new(Acked::new(&config, lanes.cap())));
        let shared = Arc::new(Shared {
            addr,
            encoder: Encoder::<H>::new(config.framing()),
            lanes,
            config,
            waker,
            closed: AtomicBool::new(false),
            conn: Mutex::new(Link {
                stream: None,
                last_batch: Instant::now(),
                epoch: 0,
            }),
            counters: Arc::default(),
            dead: Mutex::new(Vec::new()),
            replies: Mutex::new(Vec::new()),
            acked,
            notes: Mutex::new(Vec::new()),
            waiting: AtomicBool::new(false),
            #[cfg(feature = "tls")]
            tls_refused: std::sync::OnceLock::new(),
        });
        let mut failures = 0;
        if let Some(acked) = &shared.acked {
            if !plain_decoder_refuses_hello::<H>(&shared.config.framing()) {
                return Err(Error::Config(
                    "the acknowledged mode needs a header that cannot declare ten FF bytes as a \
                     valid length: use a varint or BuffStreams header, a wider one, or a lower maximum",
                ));
            }
            let mut link = relock(&shared.conn);
            let connected = shared.connect_acked(acked, &mut link, Instant::now(), &mut failures);
            drop(link);
            shared.deliver_deferred();
            connected?;
        } else {
            let connected = shared
                .connect(Instant::now(), &mut failures)
                .and_then(|s| shared.read_replies(&s).map(|()| s));
            shared.deliver_deferred();
            let stream = connected?;
            relock(&shared.conn).stream = Some(stream);
        }
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
    /// [`Error::Encode`] for a message over the maximum (nothing queued);
    /// [`Error::WindowFull`] in the acknowledged mode under [`WindowFull::Error`].
    pub fn write(&self, message: &[u8]) -> Result<usize, Error> {
        let s = &*self.shared;
        s.window_check()?;
        let header = s.encoder.header(message.len())?;
        if let Some(lane) = s.lanes.try_append_one(&header, message) {
            s.wake_if_asked(lane);
            return Ok(header.len() + message.len());
        }
        let (appended, lane) = s.lanes.append([message], |_| Ok(header), Out(s))?;
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
        lane.send_pending(|bytes, n| s.send(bytes, n));
        s.deliver_deferred();
        Ok(n)
    }

    /// Appends to this thread's lane; returns the bytes queued and the lane.
    fn queue<I>(&self, messages: I, wake: bool) -> Result<(usize, &Lane), Error>
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
    {
        let s = &*self.shared;
        s.window_check()?;
        let (appended, lane) = s
            .lanes
            .append(messages, |len| s.encoder.header(len), Out(s))?;
        s.appended(lane, appended, wake);
        Ok((appended.bytes, lane))
    }

    /// Returns once every message written before this call (by any thread) has been handed to
    /// the kernel or to the dead-letter queue. The calling thread sends what is waiting.
    ///
    /// It cannot fail: a message that could not be delivered went to the dead-letter callback
    /// or queue, and is counted in [`WriterStats::dead_lettered`].
    pub fn flush(&self) {
        self.shared.flush_all();
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
        if self.shared.config.dead_letter().is_some() {
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
        if let Some(t) = self.flusher.take()
            && t.join().is_err()
        {
            log::error!("writer {}: flusher thread panicked", self.shared.addr);
        }
        if let Some(acked) = &self.shared.acked {
            self.shared.settle(acked, self.shared.config.reply_wait());
            self.shared.deliver_deferred();
        }
        let stream = relock(&self.shared.conn).stream.take();
        let replies = std::mem::take(&mut *relock(&self.shared.replies));
        if let Some(s) = &stream {
            // With replies read, end the stream and let the listener finish replying.
            s.finish(replies.is_empty());
        }
        for r in replies {
            r.finish(self.shared.config.reply_wait());
        }
        if let Some(s) = stream {
            s.shutdown();
        }
    }
}

/// The writer as its lanes' sink: sends in either mode. In the acknowledged one, a full
/// lane's buffer joins the window as it is (no copy) and the lane continues in a spare.
struct Out<'a, H>(&'a Shared<H>);

impl<H: LengthPrefix + Send + 'static> Sink for Out<'_, H> {
    fn send(&mut self, bytes: &[u8], count: u32) {
        self.0.send(bytes, count);
    }

    fn spare(&mut self, len: usize) -> Option<Box<[u8]>> {
        self.0.acked.as_ref().map(|a| a.spare(len))
    }

    fn hand_over(&mut self, buf: Box<[u8]>, range: std::ops::Range<usize>, count: u32) {
        match &self.0.acked {
            Some(acked) => self.0.hand_over(acked, buf, range, count),
            None => {
                if let Some(bytes) = buf.get(range) {
                    self.0.send(bytes, count);
                }
            }
        }
    }
}

impl<H: LengthPrefix + Send + 'static> Shared<H> {
    /// Writes one batch of `count` whole frames, as the mode says.
    fn send(&self, batch: &[u8], count: u32) {
        match &self.acked {
            Some(acked) => self.send_acked(acked, batch, count),
            None => self.send_plain(batch),
        }
    }

    /// `WindowFull::Error`: refuses new messages while the window is full; under TLS, every
    /// message once the listener refused our certificate (or we its).
    #[inline]
    fn window_check(&self) -> Result<(), Error> {
        #[cfg(feature = "tls")]
        if let Some(e) = self.tls_refused.get() {
            return Err(Error::Tls(e.clone()));
        }
        match &self.acked {
            Some(a)
                if self.config.window_full() == WindowFull::Error
                    && a.full(self.config.ack_window()) =>
            {
                Err(Error::WindowFull)
            }
            _ => Ok(()),
        }
    }
}

impl<H: LengthPrefix + Send + 'static> Drop for Writer<H> {
    fn drop(&mut self) {
        self.shutdown();
    }
}

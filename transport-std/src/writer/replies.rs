//! What the listener sends back on a writer's connection: each connection that reads replies
//! (with [`WriterConfig::with_on_reply`](super::WriterConfig::with_on_reply), or in the
//! acknowledged mode) gets a thread that decodes it (same framing and limit as the messages
//! written) and hands every frame to a [`Back`]: the application's callback, or the
//! acknowledged mode's sender.

use std::io::{self, Read};
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use buffstreams_framing::{Config, Decoder, Event, LengthPrefix};

use super::config::ReplyFn;
use super::stream::Stream;
use crate::stats::{WriterCounters, add};

/// What a reply thread does with what it reads.
pub(super) trait Back: Send + 'static {
    /// A frame's payload; `false` when the listener broke the protocol (the connection closes).
    fn frame(&mut self, payload: &[u8]) -> bool;
    /// How long a read may wait for data before [`idle`](Self::idle) is asked.
    fn idle_every(&self) -> Option<Duration> {
        None
    }
    /// Nothing came for `idle_every`: `false` when the connection counts as broken.
    fn idle(&mut self) -> bool {
        true
    }
    /// The connection ended (whoever ended it).
    fn ended(&mut self) {}
}

/// The plain mode: every frame is a reply for the application (counted and dropped without
/// `on_reply`: a TLS connection is read all the same, see `read_replies`).
pub(super) struct Plain {
    pub(super) on_reply: Option<Arc<ReplyFn>>,
    pub(super) counters: Arc<WriterCounters>,
}

impl Back for Plain {
    fn frame(&mut self, payload: &[u8]) -> bool {
        add(&self.counters.replies, 1);
        add(&self.counters.reply_bytes, payload.len() as u64);
        if let Some(f) = &self.on_reply {
            f(payload);
        }
        true
    }
}

/// The reply thread of one connection, and a handle on its socket to end it.
pub(super) struct Replies {
    stream: Stream,
    thread: JoinHandle<()>,
}

impl Replies {
    /// Starts reading from `stream` (a clone of the writer's socket); `leftover` are bytes
    /// already read from it (after the acknowledged mode's welcome).
    pub(super) fn start<H: LengthPrefix>(
        stream: &Stream,
        framing: Config,
        mut back: impl Back,
        counters: Arc<WriterCounters>,
        addr: SocketAddr,
        leftover: Vec<u8>,
    ) -> io::Result<Self> {
        let reading = stream.try_clone()?;
        reading.set_read_timeout(back.idle_every())?;
        let thread = thread::Builder::new()
            .name(format!("bs-replies-{addr}"))
            .spawn(move || {
                read::<H>(reading, framing, &mut back, &counters, addr, &leftover);
                back.ended();
            })?;
        Ok(Self {
            stream: stream.try_clone()?,
            thread,
        })
    }

    /// Whether the thread has ended (the connection closed).
    pub(super) fn is_finished(&self) -> bool {
        self.thread.is_finished()
    }

    /// Waits up to `wait` for the listener to close the connection (it has seen our end of
    /// stream), then closes it and joins the thread.
    pub(super) fn finish(self, wait: Duration) {
        let deadline = Instant::now() + wait;
        while !self.thread.is_finished() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(1));
        }
        self.stream.shutdown();
        if self.thread.join().is_err() {
            log::error!("writer: a reply callback panicked");
        }
    }
}

fn read<H: LengthPrefix>(
    mut stream: Stream,
    framing: Config,
    back: &mut impl Back,
    counters: &WriterCounters,
    addr: SocketAddr,
    leftover: &[u8],
) {
    let mut decoder = Decoder::<H, Vec<u8>>::new(framing, Vec::new());
    let mut buf = vec![0u8; 64 * 1024];
    let mut first = Some(leftover);
    loop {
        let chunk = match first.take() {
            Some(bytes) if !bytes.is_empty() => bytes,
            _ => match stream.read(&mut buf) {
                Ok(0) => {
                    if decoder.is_mid_frame() {
                        add(&counters.protocol_errors, 1);
                        log::warn!("writer {addr}: the listener closed inside a reply");
                    }
                    return;
                }
                Ok(n) => buf.get(..n).unwrap_or_default(),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    if back.idle() {
                        continue;
                    }
                    // Counted broken: the writer reconnects.
                    stream.shutdown();
                    return;
                }
                // Closed under us: by `close`, or by `send` dropping a broken connection.
                Err(e) => {
                    #[cfg(feature = "tls")]
                    if let Some(t) = crate::tls::tls_error(&e) {
                        add(&counters.tls_errors, 1);
                        log::warn!("writer {addr}: TLS: {t}; closing the connection");
                        stream.shutdown();
                    }
                    let _ = e;
                    return;
                }
            },
        };
        let mut input = chunk;
        while !input.is_empty() {
            let fed = match decoder.feed(input) {
                Ok(fed) => fed,
                Err(e) => {
                    add(&counters.protocol_errors, 1);
                    log::warn!("writer {addr}: bad reply, closing the connection: {e}");
                    // The next batch finds it closed and reconnects.
                    stream.shutdown();
                    return;
                }
            };
            input = input.get(fed.consumed..).unwrap_or_default();
            if let Some(Event::Frame(frame)) = fed.event
                && !back.frame(frame)
            {
                add(&counters.protocol_errors, 1);
                log::warn!(
                    "writer {addr}: the listener broke the protocol, closing the connection"
                );
                stream.shutdown();
                return;
            }
        }
    }
}

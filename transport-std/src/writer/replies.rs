//! What the listener sends back: with [`WriterConfig::with_on_reply`](super::WriterConfig::with_on_reply),
//! or in the acknowledged mode, each connection gets a thread that decodes what comes back
//! (same framing and limit as the messages written) and hands replies to the callback and
//! acknowledgements to the window.

use std::io::{self, Read};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use buffstreams_framing::acked::{Back, SessionId};
use buffstreams_framing::{Config, Decoder, Event, LengthPrefix};

use super::acked::Acks;
use super::config::ReplyFn;
use super::lane::Waker;
use crate::stats::{WriterCounters, add};

/// The reply thread of one connection, and a handle on its socket to end it.
pub(super) struct Replies {
    stream: TcpStream,
    thread: JoinHandle<()>,
}

/// A reply thread's part in the acknowledged mode.
pub(super) struct AckReader {
    /// The window.
    pub(super) acks: Arc<Acks>,
    /// The session this connection said hello for: its acks count only for it.
    pub(super) session: SessionId,
    /// This connection's number.
    pub(super) generation: u64,
    /// The flusher, woken when the connection ends: it re-sends what was not acknowledged.
    pub(super) flusher: Arc<Waker>,
}

/// What a reply thread reads for.
struct Reader {
    on_reply: Option<Arc<ReplyFn>>,
    acks: Option<AckReader>,
    counters: Arc<WriterCounters>,
    addr: SocketAddr,
}

impl Replies {
    /// Starts reading from `stream` (a clone of the writer's socket); `leftover` are bytes
    /// already read from it (after the acknowledged mode's welcome).
    pub(super) fn start<H: LengthPrefix>(
        stream: &TcpStream,
        framing: Config,
        on_reply: Option<Arc<ReplyFn>>,
        acks: Option<AckReader>,
        counters: Arc<WriterCounters>,
        addr: SocketAddr,
        leftover: Vec<u8>,
    ) -> io::Result<Self> {
        let reading = stream.try_clone()?;
        let reader = Reader {
            on_reply,
            acks,
            counters,
            addr,
        };
        let thread = thread::Builder::new()
            .name(format!("bs-replies-{addr}"))
            .spawn(move || {
                read::<H>(reading, framing, &reader, &leftover);
                if let Some(a) = &reader.acks {
                    a.acks.broken(a.generation);
                    a.flusher.wake();
                }
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
        let _ = self.stream.shutdown(Shutdown::Both);
        if self.thread.join().is_err() {
            log::error!("writer: a reply callback panicked");
        }
    }
}

/// Handles one frame from the listener; `false` when it breaks the protocol.
fn handle(reader: &Reader, frame: &[u8]) -> bool {
    let reply = match &reader.acks {
        None => frame,
        Some(a) => match Back::parse(frame) {
            Ok(Back::Reply(reply)) => reply,
            Ok(Back::Ack { delivered }) => {
                return a
                    .acks
                    .acknowledged(a.session, delivered, &reader.counters)
                    .is_ok();
            }
            Ok(_) | Err(_) => return false,
        },
    };
    add(&reader.counters.replies, 1);
    if let Some(f) = &reader.on_reply {
        f(reply);
    }
    true
}

fn read<H: LengthPrefix>(mut stream: TcpStream, framing: Config, reader: &Reader, leftover: &[u8]) {
    let addr = reader.addr;
    let counters = &reader.counters;
    let mut decoder = Decoder::<H, Vec<u8>>::new(framing, Vec::new());
    let mut buf = vec![0u8; 64 * 1024];
    let mut first = Some(leftover);
    loop {
        let chunk = match first.take() {
            Some(bytes) if !bytes.is_empty() => bytes,
            _ => match stream.read(&mut buf) {
                Ok(0) => {
                    if decoder.is_mid_frame() {
                        add(&counters.reply_errors, 1);
                        log::warn!("writer {addr}: the listener closed inside a reply");
                    }
                    return;
                }
                Ok(n) => buf.get(..n).unwrap_or_default(),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // Closed under us: by `close`, or by `send` dropping a broken connection.
                Err(_) => return,
            },
        };
        let mut input = chunk;
        while !input.is_empty() {
            let fed = match decoder.feed(input) {
                Ok(fed) => fed,
                Err(e) => {
                    add(&counters.reply_errors, 1);
                    log::warn!("writer {addr}: bad reply, closing the connection: {e}");
                    // The next batch finds it closed and reconnects.
                    let _ = stream.shutdown(Shutdown::Both);
                    return;
                }
            };
            input = input.get(fed.consumed..).unwrap_or_default();
            if let Some(Event::Frame(frame)) = fed.event
                && !handle(reader, frame)
            {
                add(&counters.reply_errors, 1);
                log::warn!("writer {addr}: a malformed acknowledgement, closing the connection");
                let _ = stream.shutdown(Shutdown::Both);
                return;
            }
        }
    }
}

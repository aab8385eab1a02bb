//! What the listener sends back: with [`WriterConfig::with_on_reply`](super::WriterConfig::with_on_reply)
//! each connection gets a thread that decodes the replies (same framing and limit as the
//! messages written) and hands them to the callback.

use std::io::{self, Read};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use buffstreams_framing::{Config, Decoder, Event, LengthPrefix};

use super::config::ReplyFn;
use crate::stats::{WriterCounters, add};

/// The reply thread of one connection, and a handle on its socket to end it.
pub(super) struct Replies {
    stream: TcpStream,
    thread: JoinHandle<()>,
}

impl Replies {
    /// Starts reading replies from `stream` (a clone of the writer's socket).
    pub(super) fn start<H: LengthPrefix>(
        stream: &TcpStream,
        framing: Config,
        on_reply: Arc<ReplyFn>,
        counters: Arc<WriterCounters>,
        addr: SocketAddr,
    ) -> io::Result<Self> {
        let reading = stream.try_clone()?;
        let thread = thread::Builder::new()
            .name(format!("bs-replies-{addr}"))
            .spawn(move || read::<H>(reading, framing, &*on_reply, &counters, addr))?;
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

fn read<H: LengthPrefix>(
    mut stream: TcpStream,
    framing: Config,
    on_reply: &ReplyFn,
    counters: &WriterCounters,
    addr: SocketAddr,
) {
    let mut decoder = Decoder::<H, Vec<u8>>::new(framing, Vec::new());
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) => {
                if decoder.is_mid_frame() {
                    add(&counters.reply_errors, 1);
                    log::warn!("writer {addr}: the listener closed inside a reply");
                }
                return;
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // Closed under us: by `close`, or by `send` dropping a broken connection.
            Err(_) => return,
        };
        let mut input = buf.get(..n).unwrap_or_default();
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
            if let Some(Event::Frame(reply)) = fed.event {
                add(&counters.replies, 1);
                on_reply(reply);
            }
        }
    }
}

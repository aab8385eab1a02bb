//! Opening a connection in the acknowledged mode: the hello, the welcome, the reply thread,
//! and the unacknowledged window sent again before anything new.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::time::Instant;

use buffstreams_framing::acked::{Back, HandshakeError, back_config};
use buffstreams_framing::{Decoder, Event, LengthPrefix};

use super::acked::Acks;
use super::replies::{AckReader, Replies};
use super::{Link, Shared};
use crate::error::Error;
use crate::stats::add;
use crate::sync::relock;

impl<H: LengthPrefix> Shared<H> {
    /// Connects, says hello, reads the welcome, starts the reply thread and re-sends every
    /// message not acknowledged; on success the connection is in `link`.
    pub(super) fn connect_acked(
        &self,
        acks: &Arc<Acks>,
        link: &mut Link,
        started: Instant,
        failures: &mut u32,
    ) -> Result<(), Error> {
        loop {
            let stream = self.connect(started, failures)?;
            match self.handshake(acks, &stream, link) {
                Ok(()) => {
                    link.stream = Some(stream);
                    return Ok(());
                }
                Err(e) => {
                    let _ = stream.shutdown(Shutdown::Both);
                    add(&self.counters.connect_failures, 1);
                    *failures += 1;
                    if self.out_of_budget(started, *failures) {
                        return Err(e);
                    }
                    self.note(
                        log::Level::Debug,
                        format_args!("handshake failed ({e}), retrying"),
                    );
                    std::thread::sleep(self.config.retry().wait_after(*failures));
                }
            }
        }
    }

    fn handshake(
        &self,
        acks: &Arc<Acks>,
        stream: &TcpStream,
        link: &mut Link,
    ) -> Result<(), Error> {
        let hello = acks.hello();
        (&*stream).write_all(&hello.encode())?;
        // The welcome, within the connect timeout.
        stream.set_read_timeout(Some(self.config.connect_timeout()))?;
        let framing = back_config::<H>(self.config.framing());
        let mut decoder = Decoder::<H, Vec<u8>>::new(framing, Vec::new());
        let mut buf = [0u8; 256];
        let (delivered, leftover) = 'read: loop {
            let n = match (&*stream).read(&mut buf) {
                // Closed without a welcome: a listener without the mode refused the hello.
                Ok(0) => return Err(Error::Handshake(HandshakeError::NotAcked)),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                    return Err(Error::Handshake(HandshakeError::NotAcked));
                }
                Err(e) => return Err(Error::Io(e)),
            };
            let mut input = buf.get(..n).unwrap_or_default();
            while !input.is_empty() {
                let fed = decoder
                    .feed(input)
                    .map_err(|_| Error::Handshake(HandshakeError::BadFrame))?;
                input = input.get(fed.consumed..).unwrap_or_default();
                if let Some(Event::Frame(payload)) = fed.event {
                    match Back::parse(payload).map_err(Error::Handshake)? {
                        Back::Welcome { delivered, .. } => break 'read (delivered, input.to_vec()),
                        _ => return Err(Error::Handshake(HandshakeError::BadFrame)),
                    }
                }
            }
        };
        stream.set_read_timeout(None)?;
        acks.acknowledged(hello.session, delivered, &self.counters)
            .map_err(Error::Handshake)?;
        let generation = acks.connected();
        link.generation = generation;
        let mut replies = relock(&self.replies);
        replies.retain(|r| !r.is_finished());
        replies.push(Replies::start::<H>(
            stream,
            framing,
            self.config.on_reply_arc(),
            Some(AckReader {
                acks: acks.clone(),
                session: hello.session,
                generation,
                flusher: self.waker.clone(),
            }),
            self.counters.clone(),
            self.addr,
            leftover,
        )?);
        drop(replies);
        // Everything not acknowledged goes again, in order, before anything new.
        let (window, count) = acks.window::<H>(self.config.framing());
        if !window.is_empty() {
            let (written, result) = super::socket::write_counting(&mut &*stream, &window);
            add(&self.counters.bytes_out, written as u64);
            result?;
            add(&self.counters.resent, count);
            add(&self.counters.batches, 1);
        }
        Ok(())
    }
}

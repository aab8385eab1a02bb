//! Opening a connection in the acknowledged mode: the hello, the welcome, the reply thread,
//! and what the welcome says to send again, before anything new.

use std::io::{self, Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use buffstreams_framing::acked::{Epoch, Received, SenderError, back_config};
use buffstreams_framing::{Decoder, Event, LengthPrefix};

use super::acked::{AckReader, Acked};
use super::io::write_counting;
use super::replies::Replies;
use super::stream::Stream;
use super::{Link, Shared};
use crate::error::Error;
use crate::stats::add;

impl<H: LengthPrefix + Send + 'static> Shared<H> {
    /// Connects, says hello, reads the welcome, starts the reply thread and re-sends what the
    /// welcome says was not delivered; on success the connection is in `link`.
    pub(super) fn connect_acked(
        &self,
        acked: &Arc<Acked<H>>,
        link: &mut Link,
        started: Instant,
        failures: &mut u32,
    ) -> Result<(), Error> {
        if let Some(old) = link.stream.take() {
            old.shutdown();
        }
        loop {
            let mut stream = self.connect(started, failures)?;
            match self.handshake(acked, &mut stream) {
                Ok(epoch) => {
                    link.stream = Some(stream);
                    link.epoch = epoch;
                    return Ok(());
                }
                Err(e) => {
                    stream.shutdown();
                    add(&self.counters.connect_failures, 1);
                    *failures = failures.saturating_add(1);
                    if self.out_of_budget(started, *failures) {
                        return Err(e);
                    }
                    self.back_off(started, *failures, format_args!("handshake failed ({e})"));
                }
            }
        }
    }

    /// The hello, the welcome, the reply thread, the re-sent messages: the connection's epoch.
    fn handshake(&self, acked: &Arc<Acked<H>>, stream: &mut Stream) -> Result<Epoch, Error> {
        let opening = acked.lock().connect(acked.now_us());
        let epoch = opening.epoch;
        stream.write_all(&opening.hello)?;
        // The welcome, within the connect timeout.
        stream.set_read_timeout(Some(self.config.connect_timeout()))?;
        let leftover = self.welcome(acked, stream, epoch).map_err(|e| {
            acked.disconnected(epoch);
            match e {
                // Reset without a welcome: refused, as when closed.
                Error::Io(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                    Error::Acked(SenderError::Refused)
                }
                e => e,
            }
        })?;
        stream.set_read_timeout(None)?;
        let reader = AckReader {
            acked: acked.clone(),
            epoch,
            counters: self.counters.clone(),
            on_reply: self.config.on_reply_arc(),
            flusher: self.waker.clone(),
            // Often enough to notice a silent connection within about the write timeout.
            idle_every: self
                .config
                .write_timeout()
                .map(|t| (t / 4).max(Duration::from_millis(10))),
        };
        let framing = back_config::<H>(self.config.framing());
        self.add_replies(Replies::start::<H>(
            stream,
            framing,
            reader,
            self.counters.clone(),
            self.addr,
            leftover,
        )?);
        // What the welcome says was not delivered goes again, in order, before anything new.
        let resend = acked.take_pending();
        if !resend.is_empty() {
            let (written, result) = write_counting(stream, &resend);
            add(&self.counters.bytes_out, written as u64);
            if let Err(e) = result {
                acked.disconnected(epoch);
                return Err(e.into());
            }
            add(&self.counters.batches, 1);
        }
        Ok(epoch)
    }

    /// Reads until the welcome and hands it to the machine; returns the bytes read after it.
    fn welcome(
        &self,
        acked: &Acked<H>,
        stream: &mut Stream,
        epoch: Epoch,
    ) -> Result<Vec<u8>, Error> {
        let framing = back_config::<H>(self.config.framing());
        let mut decoder = Decoder::<H, Vec<u8>>::new(framing, Vec::new());
        let mut buf = [0u8; 256];
        loop {
            let n = match stream.read(&mut buf) {
                // Closed without a welcome: a listener without the mode, or one that refused
                // the session.
                Ok(0) => return Err(Error::Acked(SenderError::Refused)),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::Io(e)),
            };
            let mut input = buf.get(..n).unwrap_or_default();
            while !input.is_empty() {
                let fed = decoder
                    .feed(input)
                    .map_err(|_| Error::Acked(SenderError::BeforeWelcome))?;
                input = input.get(fed.consumed..).unwrap_or_default();
                let Some(Event::Frame(payload)) = fed.event else {
                    continue;
                };
                let mut s = acked.lock();
                match s.on_back(epoch, payload, acked.now_us()) {
                    Ok(Received::Welcome { newly, resend }) => {
                        add(&self.counters.acked, newly);
                        add(&self.counters.resent, resend);
                        return Ok(input.to_vec());
                    }
                    Ok(_) => return Err(Error::Acked(SenderError::BeforeWelcome)),
                    Err(e) => return Err(Error::Acked(e)),
                }
            }
        }
    }
}

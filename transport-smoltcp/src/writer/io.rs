//! What a writer sends and reads: messages framed into the send ring (or, in the
//! acknowledged mode, into the window first), and the replies coming back.

use core::ops::ControlFlow;

use buffstreams_framing::acked::QueueError;
use buffstreams_framing::{Event, LengthPrefix, Storage};
use smoltcp::iface::SocketSet;
use smoltcp::socket::tcp;

use super::acked::BackError;
use super::{State, Writer};
use crate::error::{RecvError, SendError};
use crate::socket::{read_frames, write_frame, write_frames};

impl<H: LengthPrefix, S: Storage, W: Storage> Writer<H, S, W> {
    /// Queues one framed message in the send ring; returns the bytes it takes on the wire.
    /// It leaves on the next `Interface::poll`.
    ///
    /// # Errors
    /// [`SendError::NotConnected`] until connected (and while reconnecting),
    /// [`SendError::Full`] when the ring lacks room now (nothing queued: try after the next
    /// poll), [`SendError::ExceedsBuffer`], [`SendError::Encode`].
    pub fn write(
        &mut self,
        sockets: &mut SocketSet<'_>,
        payload: &[u8],
    ) -> Result<usize, SendError> {
        if self.acked.is_some() {
            return self.queue(sockets, &[payload]);
        }
        if self.state != State::Connected {
            return Err(SendError::NotConnected);
        }
        let socket = sockets.get_mut::<tcp::Socket>(self.handle);
        let sent = write_frame(socket, &self.encoder, payload);
        self.count(sent, 1)
    }

    /// Queues several messages as one unit, all of them or none (they stay together on the
    /// wire); returns their bytes on the wire. Cheaper per message than [`write`](Self::write)
    /// in a loop: one ring update for the batch.
    ///
    /// # Errors
    /// As [`write`](Self::write), for the batch as a whole; a message that cannot be framed
    /// fails the batch before any of it is queued.
    pub fn write_batch(
        &mut self,
        sockets: &mut SocketSet<'_>,
        payloads: &[&[u8]],
    ) -> Result<usize, SendError> {
        if self.acked.is_some() {
            return self.queue(sockets, payloads);
        }
        if self.state != State::Connected {
            return Err(SendError::NotConnected);
        }
        let socket = sockets.get_mut::<tcp::Socket>(self.handle);
        let sent = write_frames(socket, &self.encoder, payloads);
        self.count(sent, payloads.len())
    }

    /// The acknowledged mode's write: the frames go straight into the window as one batch
    /// (all or nothing), then as far into the send ring as it has room.
    fn queue(
        &mut self,
        sockets: &mut SocketSet<'_>,
        payloads: &[&[u8]],
    ) -> Result<usize, SendError> {
        let Some(a) = self.acked.as_mut() else {
            return Err(SendError::NotConnected);
        };
        let encoder = &self.encoder;
        let (needed, queued) = if let [one] = payloads {
            // One message (`write`): its header is made once.
            let header = encoder.header(one.len())?;
            let needed = header.len().saturating_add(one.len());
            (needed, a.sender.queue_message(&header, one))
        } else {
            let mut needed = 0usize;
            for p in payloads {
                let n = encoder.encoded_len(p.len())?;
                needed = needed.checked_add(n).ok_or(SendError::ExceedsBuffer {
                    needed: usize::MAX,
                    capacity: a.sender.window().capacity(),
                })?;
            }
            let count = u32::try_from(payloads.len()).unwrap_or(u32::MAX);
            let queued = a.sender.queue_with(needed, count, |mut room| {
                for p in payloads {
                    // Every header was computed above and the encoder is deterministic.
                    let Ok(header) = encoder.header(p.len()) else {
                        return;
                    };
                    let (h, rest) = room.split_at_mut(header.len());
                    h.copy_from_slice(&header);
                    let (body, rest) = rest.split_at_mut(p.len());
                    body.copy_from_slice(p);
                    room = rest;
                }
            });
            (needed, queued)
        };
        match queued {
            Ok(_) => {
                // An idle link gets the message at once; while the send ring still holds
                // bytes, messages gather in the window's newest batch and move at the next
                // poll, many per copy.
                let socket = sockets.get_mut::<tcp::Socket>(self.handle);
                if self.state == State::Connected && socket.send_queue() == 0 {
                    a.pump(socket);
                }
                self.count(Ok(needed), payloads.len())
            }
            Err(QueueError::Full) => self.count(Err(SendError::WindowFull), 0),
            Err(_) => Err(SendError::ExceedsBuffer {
                needed,
                capacity: a.sender.window().capacity(),
            }),
        }
    }

    /// Counts what a write of `messages` queued, or that the ring was full.
    fn count(
        &mut self,
        sent: Result<usize, SendError>,
        messages: usize,
    ) -> Result<usize, SendError> {
        match sent {
            Ok(n) => {
                self.stats.messages_out = self.stats.messages_out.saturating_add(messages as u64);
                self.stats.bytes_out = self.stats.bytes_out.saturating_add(n as u64);
            }
            Err(SendError::Full { .. } | SendError::WindowFull) => {
                self.stats.full = self.stats.full.saturating_add(1);
            }
            Err(_) => {}
        }
        sent
    }

    /// Hands every complete reply the socket holds to `on_message`; returns how many.
    ///
    /// Once an application reads replies, a connection that the peer closes or resets is given
    /// up only after the replies that arrived before it were handed over here (call `receive`
    /// in the same loop as [`poll`](Self::poll)). A reply cut short by the close is dropped,
    /// never delivered.
    ///
    /// # Errors
    /// [`RecvError::Decode`] when the peer broke the protocol: the connection is aborted and
    /// redialled after a backoff. Not being connected is not an error here (`Ok(0)`).
    pub fn receive<F>(
        &mut self,
        sockets: &mut SocketSet<'_>,
        mut on_message: F,
    ) -> Result<usize, RecvError>
    where
        F: FnMut(&[u8]),
    {
        if !matches!(self.state, State::Connected) {
            return Ok(0);
        }
        self.reads = true;
        let socket = sockets.get_mut::<tcp::Socket>(self.handle);
        if let Some(a) = self.acked.as_mut() {
            return match a.read_back(socket, &mut self.decoder, &mut self.stats, &mut on_message) {
                Ok(n) => Ok(n),
                Err(BackError::Recv(RecvError::NotConnected)) => Ok(0),
                Err(e) => {
                    self.stats.protocol_errors = self.stats.protocol_errors.saturating_add(1);
                    socket.abort();
                    Err(match e {
                        BackError::Recv(e) => e,
                        BackError::Protocol(e) => RecvError::Acked(e),
                    })
                }
            };
        }
        let mut count = 0usize;
        let stats = &mut self.stats;
        let result = read_frames(socket, &mut self.decoder, |event| {
            if let Event::Frame(msg) = event {
                count = count.saturating_add(1);
                stats.replies = stats.replies.saturating_add(1);
                stats.reply_bytes = stats.reply_bytes.saturating_add(msg.len() as u64);
                on_message(msg);
            }
            ControlFlow::Continue(())
        });
        match result {
            Ok(_) | Err(RecvError::NotConnected) => Ok(count),
            Err(e) => {
                self.stats.protocol_errors = self.stats.protocol_errors.saturating_add(1);
                warn!(
                    "reply stream from {} broke the protocol: {}",
                    self.remote, e
                );
                // The socket is aborted; the next poll sees it closed and redials.
                socket.abort();
                Err(e)
            }
        }
    }
}

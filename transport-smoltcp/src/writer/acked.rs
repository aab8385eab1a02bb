//! The writer's acknowledged mode: framing's sans-io [`Sender`] driven from the poll loop.
//! Messages go into the window (caller storage) and leave it for the socket's send ring as
//! room allows; the listener's welcome and acknowledgements come back through the same
//! decoder that reads replies. The protocol is the machine's; this file moves bytes.

use core::ops::ControlFlow;

use buffstreams_framing::acked::{
    Broken, Epoch, HELLO_LEN, Received, Sender, SenderError, SessionId, Window,
};
use buffstreams_framing::{Decoder, Event, LengthPrefix, Storage};
use smoltcp::socket::tcp;

use smoltcp::iface::SocketSet;

use super::{State, Writer};
use crate::error::RecvError;
use crate::socket::read_frames;
use crate::stats::WriterStats;

/// The acknowledged mode's state of a [`Writer`](super::Writer).
#[derive(Debug)]
pub(crate) struct Acked<H, W> {
    pub(crate) sender: Sender<H, Window<W>>,
    epoch: Epoch,
    hello: [u8; HELLO_LEN],
    /// Bytes of the hello not yet in the send ring.
    hello_left: usize,
    /// The time of the last `poll`, for the machine's clock (µs).
    pub(crate) now_us: u64,
}

/// What reading the back channel ran into.
pub(crate) enum BackError {
    /// The socket: as [`RecvError`].
    Recv(RecvError),
    /// The listener broke the acknowledged protocol.
    Protocol(SenderError),
}

impl<H: LengthPrefix, W: Storage> Acked<H, W> {
    pub(crate) fn new(sender: Sender<H, Window<W>>) -> Self {
        Self {
            sender,
            epoch: 0,
            hello: [0; HELLO_LEN],
            hello_left: 0,
            now_us: 0,
        }
    }

    /// A connection is established: its hello goes first.
    pub(crate) fn connected(&mut self, socket: &mut tcp::Socket<'_>) {
        // The window makes this writer wait for the listener between bursts: with Nagle's
        // algorithm a burst smaller than a segment would wait for the listener's TCP ACK,
        // which smoltcp delays (10 ms by default), once per window.
        socket.set_nagle_enabled(false);
        let opening = self.sender.connect(self.now_us);
        self.epoch = opening.epoch;
        self.hello = opening.hello;
        self.hello_left = HELLO_LEN;
        self.pump(socket);
    }

    /// The connection is gone: what it did not get acknowledged goes again on the next one.
    pub(crate) fn lost(&mut self) {
        let _ = self.sender.disconnected(self.epoch);
        self.hello_left = 0;
    }

    /// Whether the connection's welcome has come.
    pub(crate) fn is_open(&self) -> bool {
        self.sender.is_open()
    }

    /// Moves what the machine says into the send ring, as far as the ring has room: the rest
    /// of the hello, then re-sent and new messages.
    pub(crate) fn pump(&mut self, socket: &mut tcp::Socket<'_>) {
        if self.hello_left > 0 {
            let from = HELLO_LEN - self.hello_left;
            let n = socket
                .send_slice(self.hello.get(from..).unwrap_or_default())
                .unwrap_or(0);
            self.hello_left -= n;
            if self.hello_left > 0 {
                return;
            }
        }
        while let Some(bytes) = self.sender.transmit() {
            let n = socket.send_slice(bytes).unwrap_or(0);
            if n == 0 {
                return;
            }
            self.sender.transmitted(n, self.now_us);
        }
    }

    /// Reads what the listener sent back: welcomes and acknowledgements go to the machine,
    /// replies to `on_reply`. Returns how many replies there were.
    pub(crate) fn read_back<S: Storage>(
        &mut self,
        socket: &mut tcp::Socket<'_>,
        decoder: &mut Decoder<H, S>,
        stats: &mut WriterStats,
        mut on_reply: impl FnMut(&[u8]),
    ) -> Result<usize, BackError> {
        let (sender, epoch, now) = (&mut self.sender, self.epoch, self.now_us);
        let mut replies = 0usize;
        let mut broke = None;
        let read = read_frames(socket, decoder, |event| {
            let Event::Frame(payload) = event else {
                return ControlFlow::Continue(());
            };
            match sender.on_back(epoch, payload, now) {
                Ok(Received::Welcome { newly, resend }) => {
                    stats.acked = stats.acked.saturating_add(newly);
                    stats.resent = stats.resent.saturating_add(resend);
                }
                Ok(Received::Acked { newly }) => stats.acked = stats.acked.saturating_add(newly),
                Ok(Received::Reply(reply)) => {
                    replies = replies.saturating_add(1);
                    stats.replies = stats.replies.saturating_add(1);
                    stats.reply_bytes = stats.reply_bytes.saturating_add(reply.len() as u64);
                    on_reply(reply);
                }
                Ok(_) => {}
                Err(e) => {
                    broke = Some(e);
                    return ControlFlow::Break(());
                }
            }
            ControlFlow::Continue(())
        });
        match (broke, read) {
            (Some(e), _) => Err(BackError::Protocol(e)),
            (None, Err(e)) => Err(BackError::Recv(e)),
            (None, Ok(_)) => Ok(replies),
        }
    }

    /// Whether the connection counts as broken now (no welcome, or silent).
    pub(crate) fn broken(&self) -> Option<Broken> {
        self.sender.poll(self.now_us)
    }

    /// Gives up every unacknowledged message (see [`Sender::give_up`]).
    pub(crate) fn give_up(&mut self, next: SessionId, dead: impl FnMut(&[u8])) -> u64 {
        self.hello_left = 0;
        self.sender.give_up(next, dead)
    }
}

/// The acknowledged mode's part of the writer's API.
impl<H: LengthPrefix, S: Storage, W: Storage> Writer<H, S, W> {
    /// Acknowledged mode: messages written and not yet acknowledged (0 in the plain mode).
    pub fn unacknowledged(&self) -> u64 {
        self.acked.as_ref().map_or(0, |a| a.sender.unacknowledged())
    }

    /// Acknowledged mode: whether every message written so far is acknowledged (always in
    /// the plain mode). Close once it is, to lose nothing.
    pub fn is_settled(&self) -> bool {
        self.unacknowledged() == 0
    }

    /// Acknowledged mode: gives up every message not acknowledged, handing each payload to
    /// `dead` (oldest first), and goes on in session `next` (new random bytes, as for
    /// [`with_acks`](Self::with_acks)): a listener that remembers the old session would take
    /// the new messages for a gap. The connection is redialled. Returns how many were given
    /// up (0 in the plain mode).
    pub fn give_up(
        &mut self,
        sockets: &mut SocketSet<'_>,
        next: SessionId,
        dead: impl FnMut(&[u8]),
    ) -> u64 {
        let Some(a) = self.acked.as_mut() else {
            return 0;
        };
        let n = a.give_up(next, dead);
        if n > 0 && self.state == State::Connected {
            // The connection belonged to the old session.
            sockets.get_mut::<tcp::Socket>(self.handle).abort();
        }
        self.stats.dead_lettered = self.stats.dead_lettered.saturating_add(n);
        n
    }
}

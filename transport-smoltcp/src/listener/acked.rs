//! The listener's acknowledged mode, slot by slot: framing's sans-io [`Receiver`] reads the
//! hello, opens the writer's session in the listener's [`Sessions`] table, numbers every
//! message and paces the acknowledgements; this file moves bytes between it and the socket.

use buffstreams_framing::acked::{
    ACK_LEN, Delivery, OpenError, Receiver, SessionSlot, Sessions, WELCOME_LEN, WireError,
};
use smoltcp::socket::tcp;
use smoltcp::time::Instant;

/// Microseconds of the application's clock, for the machines.
pub(super) fn micros(now: Instant) -> u64 {
    u64::try_from(now.total_micros()).unwrap_or(0)
}

/// One slot's acknowledged-mode state: the connection's `Receiver` and its id in the
/// session table.
#[derive(Debug, Default)]
pub(super) struct AckedSlot {
    receiver: Receiver,
    pub(super) id: u64,
}

/// What the opening of a connection came to.
pub(super) enum Opened {
    /// The hello is incomplete: nothing more to do now.
    Waiting,
    /// The session is open: send the welcome; messages follow.
    Open([u8; WELCOME_LEN]),
    /// Another slot's connection (`id`) serves the writer's session: end it, then serve this
    /// slot again.
    Held(u64),
    /// The hello came late, after a newer connection's of its session (the writer has moved
    /// on): abort the connection.
    Stale,
    /// The connection must be aborted.
    Refused,
}

impl AckedSlot {
    /// A new connection, numbered `id` (increasing in the order connections are first seen,
    /// never reused).
    pub(super) fn start(&mut self, id: u64, ack_delay_us: u64) {
        self.receiver = Receiver::new().with_ack_delay_us(ack_delay_us);
        self.id = id;
    }

    pub(super) fn is_open(&self) -> bool {
        self.receiver.is_open()
    }

    pub(super) fn is_mid_hello(&self) -> bool {
        self.receiver.is_mid_hello()
    }

    /// Reads the hello from the receive ring and, once it is whole, opens its session.
    pub(super) fn open<T>(
        &mut self,
        socket: &mut tcp::Socket<'_>,
        sessions: &mut Sessions<T>,
        now: Instant,
    ) -> Result<Opened, WireError>
    where
        T: AsRef<[SessionSlot]> + AsMut<[SessionSlot]>,
    {
        let receiver = &mut self.receiver;
        let mut hello = None;
        // Twice at most: the ring may wrap inside the hello.
        for _ in 0..2 {
            let read = socket.recv(|ring| match receiver.read_hello(ring) {
                Ok((used, h)) => (used, Ok(h)),
                Err(e) => (0, Err(e)),
            });
            match read {
                Ok(Ok(Some(h))) => {
                    hello = Some(h);
                    break;
                }
                Ok(Ok(None)) => {}
                Ok(Err(e)) => return Err(e),
                Err(_) => break,
            }
        }
        // Already read, and waiting for its session or for room: it is still there.
        let hello = match hello {
            Some(h) => h,
            None => match receiver.read_hello(&[]) {
                Ok((_, Some(h))) => h,
                _ => return Ok(Opened::Waiting),
            },
        };
        match receiver.open(hello, sessions, self.id, micros(now)) {
            Ok(welcome) => Ok(Opened::Open(welcome)),
            Err(OpenError::Held { by }) => Ok(Opened::Held(by)),
            Err(e @ OpenError::Stale { .. }) => {
                info!("{}", e);
                Ok(Opened::Stale)
            }
            Err(e) => {
                warn!("session refused: {}", e);
                Ok(Opened::Refused)
            }
        }
    }

    /// Numbers the next message (delivered, or skipped as oversize).
    pub(super) fn number(&mut self) -> Option<Delivery> {
        self.receiver.on_message()
    }

    /// The handler returned for `delivery` (a message of `len` bytes).
    pub(super) fn delivered(&mut self, delivery: Delivery, len: usize) {
        self.receiver.delivered(delivery, len);
    }

    /// The acknowledgement due at `now`, if one is (call it only with room to stage it).
    pub(super) fn acknowledge(&mut self, now: Instant) -> Option<[u8; ACK_LEN]> {
        self.receiver.poll_ack(micros(now))
    }

    /// The connection ended: its session goes back to the table.
    pub(super) fn close<T>(&mut self, sessions: &mut Sessions<T>, now: Instant)
    where
        T: AsRef<[SessionSlot]> + AsMut<[SessionSlot]>,
    {
        self.receiver.close(sessions, micros(now));
    }
}

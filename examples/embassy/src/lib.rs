//! The framing crate's `AsyncFrameWriter` / `AsyncFrameReader` over embassy-net's
//! `TcpSocket`: what firmware on an async stack runs. `#![no_std]`, no allocation: the socket
//! buffers, the decoder's storage and the I/O buffers are the caller's (or fixed arrays here).
//! CI builds it for `thumbv7em-none-eabihf`; on the host, `src/bin/embassy_tap.rs` runs the same
//! functions over a TAP device against transport-std.
//!
//! The whole wiring on a microcontroller is `examples/firmware/src/embassy.rs`: QEMU's
//! mps2-an385 with a LAN9118 driver implementing `embassy_net_driver::Driver`, a SysTick time
//! driver for embassy-time, embassy's executor in a loop that sleeps with `wfi`, and
//! [`send_to`] streaming to a desktop server. CI builds it for `thumbv7em-none-eabihf` and runs
//! it on the emulated Cortex-M3 against a transport-std `Listener` that checks every message.
//!
//! The differences from the poll-based `transport-smoltcp` are in the project README.
#![no_std]

use buffstreams_framing::{
    AsyncFrameReader, AsyncFrameWriter, BigEndian, Config, Decoder, Encoder, ReadError, WriteError,
};
use embassy_net::tcp::{AcceptError, ConnectError, Error as TcpError, TcpSocket};
use embassy_net::{IpEndpoint, IpListenEndpoint, Stack};

/// Longest message exchanged.
pub const MAX: usize = 1000;

/// The framing both sides use: tokio-util's and transport-std's default header.
pub type Header = BigEndian<4>;

/// The framing configuration: messages up to [`MAX`] bytes.
pub const CONFIG: Config = Config::new().with_max_frame_len(MAX);

/// Message `i`: 0 to [`MAX`] bytes, every byte depending on `i` and its position, written
/// into `buf`.
pub fn message(i: u32, buf: &mut [u8; MAX]) -> &[u8] {
    let len = (i as usize).wrapping_mul(37) % (MAX + 1);
    for (j, b) in buf.iter_mut().take(len).enumerate() {
        *b = (i as usize).wrapping_mul(131).wrapping_add(j) as u8;
    }
    &buf[..len]
}

/// Checks arriving messages against [`message`], in order: the receiving side of every
/// exchange (here, in the host program and in the firmware test).
#[derive(Debug, Default)]
pub struct Expected {
    next: u32,
    first_wrong: Option<u32>,
}

impl Expected {
    /// Checks `m` as the next message; whether it is right.
    pub fn check(&mut self, m: &[u8]) -> bool {
        let mut want = [0u8; MAX];
        let right = m == message(self.next, &mut want);
        if !right && self.first_wrong.is_none() {
            self.first_wrong = Some(self.next);
        }
        self.next += 1;
        right
    }

    /// Messages checked so far.
    pub fn count(&self) -> u32 {
        self.next
    }

    /// The index of the first message that differed, if one did.
    pub fn first_wrong(&self) -> Option<u32> {
        self.first_wrong
    }
}

/// What went wrong in an exchange.
#[derive(Debug, PartialEq, Eq)]
pub enum Error {
    /// The connection could not be made.
    Connect(ConnectError),
    /// No connection was accepted.
    Accept(AcceptError),
    /// Writing a frame failed.
    Write(WriteError<TcpError>),
    /// Reading a frame failed (I/O, an invalid frame, or the stream cut inside one).
    Read(ReadError<TcpError>),
    /// Message `index` arrived with other bytes than were sent.
    Differs {
        /// Which message.
        index: u32,
    },
    /// The peer closed after this many messages, fewer than expected.
    Short(u32),
}

/// Dials `server` and sends messages `0..count` through an `AsyncFrameWriter`, then closes
/// the connection and waits until the peer has acknowledged everything.
///
/// # Errors
/// [`Error::Connect`] or [`Error::Write`].
pub async fn send_to(
    stack: Stack<'_>,
    server: impl Into<IpEndpoint>,
    rx: &mut [u8],
    tx: &mut [u8],
    count: u32,
) -> Result<(), Error> {
    let mut socket = TcpSocket::new(stack, rx, tx);
    socket.connect(server).await.map_err(Error::Connect)?;
    let mut out = AsyncFrameWriter::new(socket, Encoder::<Header>::new(CONFIG), [0u8; 1536]);
    let mut buf = [0u8; MAX];
    for i in 0..count {
        out.write_frame(message(i, &mut buf))
            .await
            .map_err(Error::Write)?;
    }
    out.flush().await.map_err(Error::Write)?;
    let mut socket = out.into_inner();
    socket.close();
    // Returns once the FIN and everything before it are acknowledged.
    socket
        .flush()
        .await
        .map_err(|e| Error::Write(WriteError::Io(e)))
}

/// Accepts one connection on `port` and reads frames through an `AsyncFrameReader` until
/// the peer closes, checking each against [`message`]; returns how many arrived.
///
/// # Errors
/// [`Error::Accept`], [`Error::Read`], [`Error::Differs`], or [`Error::Short`] when fewer
/// than `count` arrived.
pub async fn receive_on(
    stack: Stack<'_>,
    port: u16,
    rx: &mut [u8],
    tx: &mut [u8],
    count: u32,
) -> Result<u32, Error> {
    let mut socket = TcpSocket::new(stack, rx, tx);
    socket
        .accept(IpListenEndpoint { addr: None, port })
        .await
        .map_err(Error::Accept)?;
    let decoder = Decoder::<Header, _>::new(CONFIG, [0u8; MAX]);
    let mut frames = AsyncFrameReader::new(socket, decoder, [0u8; 2048]);
    let mut expected = Expected::default();
    while let Some(frame) = frames.read_frame().await.map_err(Error::Read)? {
        if !expected.check(frame) {
            return Err(Error::Differs {
                index: expected.count() - 1,
            });
        }
    }
    if expected.count() < count {
        return Err(Error::Short(expected.count()));
    }
    Ok(expected.count())
}

//! What a callback gets besides the message: the peer, replies, and in the acknowledged
//! mode the message's number.

use std::io::{self, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;

use buffstreams_framing::acked::{Delivery, REPLY, back_config};
use buffstreams_framing::{EncodeError, Encoder, LengthPrefix};

use super::config::ListenerConfig;
use super::shared::Shared;
use crate::error::Error;
use crate::stats::add;

/// The connection a message came from, handed to [`Listener::spawn_with_reply`](super::Listener::spawn_with_reply) callbacks.
pub struct Connection<H> {
    peer: SocketAddr,
    stream: Arc<TcpStream>,
    encoder: Encoder<H>,
    /// The longest reply (the framing's maximum; in the acknowledged mode the encoder allows
    /// one more byte, the kind).
    max_reply: usize,
    out: Vec<u8>,
    shared: Arc<Shared>,
    /// A reply write failed: part of a frame may be on the wire, so the connection must end.
    pub(super) broken: bool,
    acks: bool,
    pub(super) delivery: Option<Delivery>,
    /// The connection's TLS session (feature `tls`, with `ListenerConfig::with_tls`).
    #[cfg(feature = "tls")]
    pub(super) tls: Option<Box<crate::tls::Session>>,
}

impl<H> std::fmt::Debug for Connection<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

impl<H: LengthPrefix> Connection<H> {
    pub(super) fn new(
        peer: SocketAddr,
        stream: Arc<TcpStream>,
        config: &ListenerConfig,
        shared: Arc<Shared>,
    ) -> Self {
        let framing = config.framing();
        let max_reply = framing.effective_max_frame_len::<H>();
        let framing = if config.acks() {
            back_config::<H>(framing)
        } else {
            framing
        };
        Self {
            peer,
            stream,
            encoder: Encoder::new(framing),
            max_reply,
            out: Vec::new(),
            shared,
            broken: false,
            acks: config.acks(),
            delivery: None,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }

    /// In the acknowledged mode ([`ListenerConfig::with_acks`]), the message's session,
    /// number and whether it may be a repeat (see [`Delivery`]); `None` otherwise.
    pub fn delivery(&self) -> Option<Delivery> {
        self.delivery
    }

    /// Queues an acknowledged-mode control frame (a welcome or an ack).
    pub(super) fn control(&mut self, payload: &[u8]) -> Result<(), Error> {
        let header = self.encoder.header(payload.len())?;
        self.out.extend_from_slice(&header);
        self.out.extend_from_slice(payload);
        Ok(())
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// Under TLS ([`ListenerConfig::with_tls`]), the certificates the peer presented, its own
    /// first: under mutual TLS, verified against the client verifier's roots before any
    /// message is handed over, so an application can authorise per device (by its
    /// certificate's subject or key). `None` without TLS or without a client certificate.
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn peer_certificates(&self) -> Option<&[rustls::pki_types::CertificateDer<'static>]> {
        self.tls.as_ref()?.peer_certificates()
    }

    /// Queues a reply message on this connection; returns its size on the wire. Replies are
    /// written when the callback has seen every message of the chunk just read, so pipelined
    /// requests get their replies in one write and a lone request's reply goes out at once.
    ///
    /// # Errors
    /// [`Error::Encode`] if the reply is longer than the maximum message size.
    pub fn reply(&mut self, message: &[u8]) -> Result<usize, Error> {
        if message.len() > self.max_reply {
            return Err(Error::Encode(EncodeError::FrameTooLong {
                len: message.len(),
                max: self.max_reply,
            }));
        }
        let kind = if self.acks { &[REPLY][..] } else { &[] };
        let header = self.encoder.header(kind.len() + message.len())?;
        self.out.extend_from_slice(&header);
        self.out.extend_from_slice(kind);
        self.out.extend_from_slice(message);
        add(&self.shared.counters.messages_out, 1);
        if self.out.len() >= 64 * 1024 {
            self.flush()?;
        }
        Ok(header.len() + kind.len() + message.len())
    }

    /// Writes queued replies now.
    ///
    /// # Errors
    /// The socket's error; the connection is closed after the callback returns.
    pub fn flush(&mut self) -> Result<(), Error> {
        if self.broken {
            return Err(Error::Io(io::ErrorKind::BrokenPipe.into()));
        }
        if self.out.is_empty() {
            return Ok(());
        }
        let r = self.write_out();
        self.broken = r.is_err();
        add(&self.shared.counters.bytes_out, self.out.len() as u64);
        self.out.clear();
        r.map_err(Error::Io)
    }
}

impl<H> Connection<H> {
    /// Under TLS, whether the handshake is under way or a record is cut.
    pub(super) fn tls_mid(&self) -> bool {
        #[cfg(feature = "tls")]
        if let Some(tls) = &self.tls {
            return tls.is_mid();
        }
        false
    }

    /// Writes `out` on the socket (sealed in TLS records under TLS).
    fn write_out(&self) -> io::Result<()> {
        #[cfg(feature = "tls")]
        if let Some(tls) = &self.tls {
            let mut rest = &self.out[..];
            while !rest.is_empty() {
                let n = tls.write(&self.stream, rest)?;
                rest = rest.get(n..).unwrap_or_default();
            }
            return Ok(());
        }
        (&*self.stream).write_all(&self.out)
    }
}

impl<H> Drop for Connection<H> {
    fn drop(&mut self) {
        #[cfg(feature = "tls")]
        if let Some(tls) = &self.tls
            && !tls.is_handshaking()
        {
            tls.close(&self.stream, true);
        }
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

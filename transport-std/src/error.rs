//! The transport's error type.

use std::fmt;
use std::io;
use std::net::SocketAddr;

use buffstreams_framing::EncodeError;
use buffstreams_framing::acked::SenderError;

/// Errors of the listener, writer and manager.
///
/// Protocol violations by a peer never surface here: they close that peer's connection, are
/// logged and counted in [`ListenerStats`](crate::ListenerStats).
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// Binding, dialling or another socket operation failed.
    Io(io::Error),
    /// The message cannot be framed (longer than the maximum); nothing was queued.
    Encode(EncodeError),
    /// The manager already has a listener or writer for this address.
    AlreadyOpen(SocketAddr),
    /// The manager has no listener or writer for this address.
    NotOpen(SocketAddr),
    /// The address did not resolve to any socket address.
    BadAddress(String),
    /// The acknowledged mode could not open a connection: the listener does not speak it
    /// (or refused the session), or spoke it wrongly.
    Acked(SenderError),
    /// The acknowledged writer's window is full and it is configured to say so
    /// ([`WindowFull::Error`](crate::WindowFull::Error)) rather than wait.
    WindowFull,
    /// A configuration that cannot work, and why.
    Config(&'static str),
    /// TLS failed (feature `tls`): the handshake, a certificate, or the peer's records. See
    /// [`TlsError::reason`]; a [permanent](TlsReason::is_permanent) reason is never retried.
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    Tls(TlsError),
}

/// Why a TLS connection failed, in the terms one acts on (feature `tls`).
#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TlsReason {
    /// The peer's certificate did not verify: an unknown issuer, expired or not yet valid,
    /// not valid for the name dialled, revoked, or otherwise refused.
    PeerCertificate,
    /// The peer presented no certificate where one is required.
    NoCertificate,
    /// The peer refused our certificate (or that we sent none): it sent a certificate alert.
    RefusedByPeer,
    /// No protocol version, cipher suite or application protocol in common.
    Incompatible,
    /// What arrived is not TLS: a plaintext peer, or garbage.
    NotTls,
    /// The connection closed (or was reset) during the handshake: a listener without TLS,
    /// one that is overloaded, or a network fault.
    Closed,
    /// Another violation of the protocol.
    Protocol,
}

#[cfg(feature = "tls")]
impl TlsReason {
    /// Whether trying again with the same configuration cannot help (a certificate, or no
    /// common protocol): the writer does not retry these.
    pub const fn is_permanent(self) -> bool {
        matches!(
            self,
            Self::PeerCertificate | Self::NoCertificate | Self::RefusedByPeer | Self::Incompatible
        )
    }
}

#[cfg(feature = "tls")]
impl fmt::Display for TlsReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::PeerCertificate => "the peer's certificate was refused",
            Self::NoCertificate => "the peer presented no certificate",
            Self::RefusedByPeer => "the peer refused our certificate",
            Self::Incompatible => "no TLS version or cipher suite in common",
            Self::NotTls => "the peer does not speak TLS",
            Self::Closed => "the connection closed during the TLS handshake",
            Self::Protocol => "the peer broke the TLS protocol",
        })
    }
}

/// A TLS failure: why ([`reason`](Self::reason)) and rustls's own error, when there is one
/// (feature `tls`).
#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
#[derive(Clone, Debug)]
pub struct TlsError {
    reason: TlsReason,
    source: Option<rustls::Error>,
}

#[cfg(feature = "tls")]
impl TlsError {
    pub(crate) fn new(reason: TlsReason, source: Option<rustls::Error>) -> Self {
        Self { reason, source }
    }

    /// Why it failed.
    pub fn reason(&self) -> TlsReason {
        self.reason
    }

    /// rustls's error, if the failure was one (not, for instance, a closed connection).
    pub fn rustls(&self) -> Option<&rustls::Error> {
        self.source.as_ref()
    }
}

#[cfg(feature = "tls")]
impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Some(e) => write!(f, "{} ({e})", self.reason),
            None => write!(f, "{}", self.reason),
        }
    }
}

#[cfg(feature = "tls")]
impl std::error::Error for TlsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_ref().map(|e| e as _)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(e) => write!(f, "I/O error: {e}"),
            Self::Encode(e) => write!(f, "cannot frame message: {e}"),
            Self::AlreadyOpen(a) => write!(f, "{a} is already open"),
            Self::NotOpen(a) => write!(f, "{a} is not open"),
            Self::BadAddress(a) => write!(f, "address {a:?} did not resolve"),
            Self::Acked(e) => write!(f, "acknowledged mode: {e}"),
            Self::WindowFull => f.write_str("the acknowledgement window is full"),
            Self::Config(why) => write!(f, "invalid configuration: {why}"),
            #[cfg(feature = "tls")]
            Self::Tls(e) => write!(f, "TLS: {e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io(e) => Some(e),
            Self::Encode(e) => Some(e),
            Self::Acked(e) => Some(e),
            #[cfg(feature = "tls")]
            Self::Tls(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        #[cfg(feature = "tls")]
        if let Some(t) = crate::tls::tls_error(&e) {
            return Self::Tls(t);
        }
        Self::Io(e)
    }
}

impl From<EncodeError> for Error {
    fn from(e: EncodeError) -> Self {
        Self::Encode(e)
    }
}

/// Resolves `addr` to its first socket address.
pub(crate) fn resolve(
    addr: impl std::net::ToSocketAddrs + fmt::Debug,
) -> Result<SocketAddr, Error> {
    let text = format!("{addr:?}");
    addr.to_socket_addrs()?
        .next()
        .ok_or(Error::BadAddress(text))
}

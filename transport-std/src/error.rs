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
    /// [`TlsError::reason`](crate::TlsError::reason); a
    /// [permanent](crate::TlsReason::is_permanent) reason is never retried.
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    Tls(crate::TlsError),
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

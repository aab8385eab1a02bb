//! A writer's connection: a TCP socket, under TLS (feature `tls`) with its session shared by
//! the threads that send on it and the one that reads it.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
#[cfg(feature = "tls")]
use std::sync::Arc;
use std::time::Duration;

#[cfg(feature = "tls")]
use crate::tls::{Scratch, Session};

/// One connection to the listener (or a handle on it for another thread).
#[derive(Debug)]
pub(super) struct Stream {
    tcp: TcpStream,
    #[cfg(feature = "tls")]
    tls: Option<Arc<Session>>,
    /// Ciphertext read from the socket (under TLS, for this handle's reads).
    #[cfg(feature = "tls")]
    scratch: Scratch,
}

impl Stream {
    pub(super) fn plain(tcp: TcpStream) -> Self {
        Self {
            tcp,
            #[cfg(feature = "tls")]
            tls: None,
            #[cfg(feature = "tls")]
            scratch: Scratch::default(),
        }
    }

    #[cfg(feature = "tls")]
    pub(super) fn tls(tcp: TcpStream, session: Session) -> Self {
        Self {
            tcp,
            tls: Some(Arc::new(session)),
            scratch: Scratch::default(),
        }
    }

    /// The socket, for what TLS does not change (polling it for the peer's close).
    pub(super) fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    /// Another handle on the same connection (a reading thread's).
    pub(super) fn try_clone(&self) -> io::Result<Self> {
        Ok(Self {
            tcp: self.tcp.try_clone()?,
            #[cfg(feature = "tls")]
            tls: self.tls.clone(),
            #[cfg(feature = "tls")]
            scratch: Scratch::default(),
        })
    }

    pub(super) fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        self.tcp.set_read_timeout(t)
    }

    /// Ends the connection both ways (best effort).
    pub(super) fn shutdown(&self) {
        let _ = self.tcp.shutdown(Shutdown::Both);
    }

    /// Ends our side (`both`: and the listener's) after telling a TLS peer so
    /// (close_notify).
    pub(super) fn finish(&self, both: bool) {
        #[cfg(feature = "tls")]
        if let Some(tls) = &self.tls {
            tls.close(&self.tcp, both);
        }
        let _ = self.tcp.shutdown(if both {
            Shutdown::Both
        } else {
            Shutdown::Write
        });
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        #[cfg(feature = "tls")]
        if let Some(tls) = &self.tls {
            return tls.read(&self.tcp, buf, &mut self.scratch);
        }
        (&self.tcp).read(buf)
    }
}

impl Write for Stream {
    /// Under TLS: seals up to 64 KiB in records and writes them; counts what went out in
    /// whole records (what the listener can have read).
    #[inline]
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        #[cfg(feature = "tls")]
        if let Some(tls) = &self.tls {
            return tls.write(&self.tcp, buf);
        }
        (&self.tcp).write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

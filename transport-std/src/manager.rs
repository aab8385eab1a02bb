//! The manager: BuffStreams' `Manager` — listeners and writers kept by address.

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::{Arc, Mutex};

use buffstreams_framing::{BigEndian, LengthPrefix};

use crate::error::{Error, resolve};
use crate::listener::{CallbackResult, Listener, ListenerConfig, ListenerHandle};
use crate::stats::WriterStats;
use crate::sync::relock;
use crate::writer::{Writer, WriterConfig};

/// Listeners and writers by address; every method takes `&self` and is safe from many threads.
/// Closed entries are removed, so an address can be opened again. Dropping the manager shuts
/// everything down (writers flush first).
///
/// # Examples
/// ```no_run
/// use buffstreams_transport_std::{ListenerConfig, Manager, WriterConfig};
///
/// let manager: Manager = Manager::new();
/// let addr = manager.start_listening("127.0.0.1:0", ListenerConfig::new(), |msg: &[u8]| {
///     println!("{} bytes", msg.len());
///     Ok(())
/// })?;
/// manager.dial(addr, WriterConfig::new())?;
/// manager.write(addr, b"hello")?;
/// manager.close_writer(addr)?;
/// manager.close_listener(addr)?;
/// # Ok::<(), buffstreams_transport_std::Error>(())
/// ```
pub struct Manager<H: LengthPrefix + Send + 'static = BigEndian<4>> {
    listeners: Mutex<HashMap<SocketAddr, ListenerHandle>>,
    writers: Mutex<HashMap<SocketAddr, Arc<Writer<H>>>>,
}

impl<H: LengthPrefix + Send + 'static> std::fmt::Debug for Manager<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The addresses in use; `try_lock` so a Debug print never waits on another thread.
        let listeners = self
            .listeners
            .try_lock()
            .map(|m| m.keys().copied().collect::<Vec<_>>());
        let writers = self
            .writers
            .try_lock()
            .map(|m| m.keys().copied().collect::<Vec<_>>());
        let mut d = f.debug_struct("Manager");
        match listeners {
            Ok(addrs) => d.field("listeners", &addrs),
            Err(_) => d.field("listeners", &"<busy>"),
        };
        match writers {
            Ok(addrs) => d.field("writers", &addrs),
            Err(_) => d.field("writers", &"<busy>"),
        };
        d.finish()
    }
}

impl<H: LengthPrefix + Send + 'static> Default for Manager<H> {
    fn default() -> Self {
        Self {
            listeners: Mutex::new(HashMap::new()),
            writers: Mutex::new(HashMap::new()),
        }
    }
}

impl<H: LengthPrefix + Send + 'static> Manager<H> {
    /// An empty manager.
    pub fn new() -> Self {
        Self::default()
    }

    /// Binds and starts a listener in the background; returns its bound address (the key
    /// for [`close_listener`](Self::close_listener), and the real port when `addr` asked for 0).
    ///
    /// # Errors
    /// [`Error::AlreadyOpen`] if this manager already listens there; the bind error; an
    /// [`Error::Io`] if the listener's thread cannot be started.
    pub fn start_listening<F>(
        &self,
        addr: impl ToSocketAddrs + std::fmt::Debug,
        config: ListenerConfig,
        callback: F,
    ) -> Result<SocketAddr, Error>
    where
        F: Fn(&[u8]) -> CallbackResult + Send + Sync + 'static,
    {
        let addr = resolve(addr)?;
        let mut listeners = relock(&self.listeners);
        if listeners.contains_key(&addr) {
            return Err(Error::AlreadyOpen(addr));
        }
        let listener = Listener::<H>::bind(addr, config)?;
        let local = listener.local_addr();
        if listeners.contains_key(&local) {
            return Err(Error::AlreadyOpen(local));
        }
        listeners.insert(local, listener.spawn(callback)?);
        Ok(local)
    }

    /// Stops the listener on `addr` gracefully and forgets it.
    ///
    /// # Errors
    /// [`Error::NotOpen`] if there is none.
    pub fn close_listener(&self, addr: impl ToSocketAddrs + std::fmt::Debug) -> Result<(), Error> {
        let addr = resolve(addr)?;
        // Shut down outside the map lock: it waits for callbacks to finish.
        let handle = relock(&self.listeners)
            .remove(&addr)
            .ok_or(Error::NotOpen(addr))?;
        handle.shutdown();
        Ok(())
    }

    /// Dials `addr` and keeps the writer.
    ///
    /// # Errors
    /// [`Error::AlreadyOpen`] if a writer to `addr` exists, or the dial error.
    pub fn dial(
        &self,
        addr: impl ToSocketAddrs + std::fmt::Debug,
        config: WriterConfig,
    ) -> Result<(), Error> {
        let addr = resolve(addr)?;
        if relock(&self.writers).contains_key(&addr) {
            return Err(Error::AlreadyOpen(addr));
        }
        // Dial outside the lock (it may retry for a while), then insert unless someone won.
        let writer = Arc::new(Writer::<H>::dial(addr, config)?);
        let mut writers = relock(&self.writers);
        if writers.contains_key(&addr) {
            return Err(Error::AlreadyOpen(addr));
        }
        writers.insert(addr, writer);
        Ok(())
    }

    /// Writes one message to the writer for `addr`; returns its size on the wire.
    ///
    /// # Errors
    /// [`Error::NotOpen`] if there is no writer for `addr`, or the writer's error.
    pub fn write(
        &self,
        addr: impl ToSocketAddrs + std::fmt::Debug,
        message: &[u8],
    ) -> Result<usize, Error> {
        self.writer(addr)?.write(message)
    }

    /// Flushes the writer for `addr`.
    ///
    /// # Errors
    /// [`Error::NotOpen`] if there is no writer for `addr`.
    pub fn flush(&self, addr: impl ToSocketAddrs + std::fmt::Debug) -> Result<(), Error> {
        self.writer(addr)?.flush();
        Ok(())
    }

    /// The writer for `addr`, to write without a map look-up per message or read its counters.
    ///
    /// # Errors
    /// [`Error::NotOpen`] if there is none.
    pub fn writer(
        &self,
        addr: impl ToSocketAddrs + std::fmt::Debug,
    ) -> Result<Arc<Writer<H>>, Error> {
        let addr = resolve(addr)?;
        relock(&self.writers)
            .get(&addr)
            .cloned()
            .ok_or(Error::NotOpen(addr))
    }

    /// Forgets the writer for `addr` and flushes it. If the manager held the only handle
    /// (no `Arc` from [`writer`](Self::writer) is alive elsewhere), the writer is closed as
    /// [`Writer::close`] does and its final counters are returned; otherwise it stays open
    /// for those handles, closes when the last of them is dropped, and `None` is returned.
    ///
    /// # Errors
    /// [`Error::NotOpen`] if there is none.
    pub fn close_writer(
        &self,
        addr: impl ToSocketAddrs + std::fmt::Debug,
    ) -> Result<Option<WriterStats>, Error> {
        let addr = resolve(addr)?;
        let writer = relock(&self.writers)
            .remove(&addr)
            .ok_or(Error::NotOpen(addr))?;
        match Arc::try_unwrap(writer) {
            Ok(writer) => Ok(Some(writer.close())),
            Err(shared) => {
                shared.flush();
                Ok(None)
            }
        }
    }

    /// Addresses with a listener.
    pub fn listeners(&self) -> Vec<SocketAddr> {
        relock(&self.listeners).keys().copied().collect()
    }

    /// Addresses with a writer.
    pub fn writers(&self) -> Vec<SocketAddr> {
        relock(&self.writers).keys().copied().collect()
    }
}

impl<H: LengthPrefix + Send + 'static> Drop for Manager<H> {
    fn drop(&mut self) {
        // Writers first, so their last messages reach our own listeners.
        let writers: Vec<_> = relock(&self.writers).drain().collect();
        drop(writers);
        let listeners: Vec<_> = relock(&self.listeners).drain().collect();
        for (_, l) in listeners {
            l.shutdown();
        }
    }
}

//! The listener: BuffStreams' `ListenTCP` + `StartListening` / `StartListeningAsync`.
//!
//! One thread accepts; each connection gets its own thread, which reads big chunks, hands
//! every complete message to the callback, and writes replies back in one batch before it
//! reads again. Protocol violations close only the connection that made them.

mod accept;
mod acked;
mod config;
mod connection;
mod deadline;
mod poll;
mod serve;
mod shared;

use std::marker::PhantomData;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::sync::Arc;
use std::thread::JoinHandle;

use buffstreams_framing::acked::plain_decoder_refuses_hello;
use buffstreams_framing::{BigEndian, DecodeError, LengthPrefix};

use crate::error::{Error, resolve};
use crate::stats::ListenerStats;
use crate::sync::relock;
use accept::serve;
use shared::Shared;

pub use buffstreams_framing::acked::Delivery;
pub use config::{ListenerConfig, OverLimit};
pub use connection::Connection;

/// What a callback returns; an `Err` is logged and counted, the connection stays open.
pub type CallbackResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// Told about each protocol error: the peer and what was wrong
/// ([`Listener::on_protocol_error`]).
pub type ProtocolErrorFn = dyn Fn(SocketAddr, &DecodeError) + Send + Sync;

pub(crate) type Handler<H> = dyn Fn(&[u8], &mut Connection<H>) -> CallbackResult + Send + Sync;

/// A bound listener; start it with [`run`](Self::run) (blocking) or [`spawn`](Self::spawn).
///
/// The header format is the type parameter, `BigEndian<4>` unless named: write
/// `let l: Listener = ..` for the default, `Listener::<BuffStreams<3>>::bind(..)` for another.
///
/// The callback is `Fn + Send + Sync`: every connection's thread calls it, possibly at once
/// (transport-smoltcp's handler, called from one poll loop, can be `FnMut`).
///
/// # Examples
/// ```no_run
/// use buffstreams_transport_std::{Listener, ListenerConfig};
///
/// let config = ListenerConfig::new().with_max_frame_len(1 << 16);
/// let listener: Listener = Listener::bind("127.0.0.1:5031", config)?;
/// let handle = listener.spawn(|msg: &[u8]| {
///     println!("got {} bytes", msg.len());
///     Ok(())
/// })?;
/// // ... later: stop accepting, finish callbacks, join every thread, release the port.
/// handle.shutdown();
/// # Ok::<(), buffstreams_transport_std::Error>(())
/// ```
pub struct Listener<H = BigEndian<4>> {
    socket: TcpListener,
    config: ListenerConfig,
    shared: Arc<Shared>,
    _format: PhantomData<fn() -> H>,
}

impl<H> std::fmt::Debug for Listener<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("local_addr", &self.shared.local)
            .field("config", &self.config)
            .finish()
    }
}

impl<H: LengthPrefix + 'static> Listener<H> {
    /// Binds to `addr` (port 0 picks a free port; see [`local_addr`](Self::local_addr)).
    ///
    /// # Errors
    /// [`Error::Io`] if the address cannot be bound; [`Error::Config`] for the acknowledged mode
    /// with a header format it cannot tell from a plain stream.
    pub fn bind(
        addr: impl ToSocketAddrs + std::fmt::Debug,
        config: ListenerConfig,
    ) -> Result<Self, Error> {
        if config.acks() && !plain_decoder_refuses_hello::<H>(&config.framing()) {
            return Err(Error::Config(
                "the acknowledged mode needs a header that cannot declare ten FF bytes as a \
                 valid length: use a varint or BuffStreams header, a wider one, or a lower maximum",
            ));
        }
        let addr = resolve(addr)?;
        let socket = TcpListener::bind(addr)?;
        let local = socket.local_addr()?;
        log::info!("listener {local}: bound");
        let shared = Arc::new(Shared::new(local, &config));
        Ok(Self {
            socket,
            config,
            shared,
            _format: PhantomData,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local
    }

    /// Calls `f` with the peer and the error whenever a connection is closed for breaking the
    /// protocol (an oversize or invalid header: what [`ListenerStats::protocol_errors`]
    /// counts), on that connection's thread, before it closes. For telling the operator at
    /// once which peer speaks another format; a panic in `f` is caught and ignored.
    ///
    /// ```no_run
    /// use buffstreams_transport_std::{Listener, ListenerConfig};
    ///
    /// let listener: Listener = Listener::bind("127.0.0.1:5031", ListenerConfig::new())?
    ///     .on_protocol_error(|peer, e| eprintln!("{peer}: {e}"));
    /// # Ok::<(), buffstreams_transport_std::Error>(())
    /// ```
    pub fn on_protocol_error(
        self,
        f: impl Fn(SocketAddr, &DecodeError) + Send + Sync + 'static,
    ) -> Self {
        *relock(&self.shared.on_protocol_error) = Some(Arc::new(f));
        self
    }

    /// A handle that stops a listener running on another thread with [`run`](Self::run).
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            shared: self.shared.clone(),
        }
    }

    /// Current counters.
    pub fn stats(&self) -> ListenerStats {
        self.shared.counters.snapshot()
    }

    /// Serves on the calling thread until a [`ShutdownHandle`] stops it (BuffStreams
    /// `StartListening`); returns after every connection thread has been joined.
    pub fn run<F>(self, callback: F)
    where
        F: Fn(&[u8]) -> CallbackResult + Send + Sync + 'static,
    {
        self.run_with_reply(move |m: &[u8], _: &mut Connection<H>| callback(m));
    }

    /// As [`run`](Self::run), with the connection for the peer address and replies.
    pub fn run_with_reply<F>(self, callback: F)
    where
        F: Fn(&[u8], &mut Connection<H>) -> CallbackResult + Send + Sync + 'static,
    {
        serve::<H>(self.socket, self.config, self.shared, Arc::new(callback));
    }

    /// Serves on a background thread (BuffStreams `StartListeningAsync`).
    ///
    /// # Errors
    /// [`Error::Io`] if the accept thread cannot be started (the port is released).
    pub fn spawn<F>(self, callback: F) -> Result<ListenerHandle, Error>
    where
        F: Fn(&[u8]) -> CallbackResult + Send + Sync + 'static,
    {
        self.spawn_with_reply(move |m: &[u8], _: &mut Connection<H>| callback(m))
    }

    /// As [`spawn`](Self::spawn), with the connection for the peer address and replies.
    ///
    /// ```no_run
    /// use buffstreams_transport_std::{Listener, ListenerConfig};
    ///
    /// let listener: Listener = Listener::bind("127.0.0.1:0", ListenerConfig::new())?;
    /// let echo = listener.spawn_with_reply(|msg, conn| {
    ///     conn.reply(msg)?; // sent when this chunk of requests is done, no flush needed
    ///     Ok(())
    /// })?;
    /// # Ok::<(), buffstreams_transport_std::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`spawn`](Self::spawn).
    pub fn spawn_with_reply<F>(self, callback: F) -> Result<ListenerHandle, Error>
    where
        F: Fn(&[u8], &mut Connection<H>) -> CallbackResult + Send + Sync + 'static,
    {
        let shared = self.shared.clone();
        let local = shared.local;
        let thread = self
            .config
            .thread_builder(format!("bs-listen-{local}"))
            .spawn(move || self.run_with_reply(callback))
            .map_err(|e| {
                log::error!("listener {local}: cannot spawn the accept thread: {e}");
                Error::Io(e)
            })?;
        Ok(ListenerHandle {
            shared,
            thread: Some(thread),
        })
    }
}

/// Stops a listener from any thread; see [`Listener::shutdown_handle`].
#[derive(Clone)]
pub struct ShutdownHandle {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for ShutdownHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShutdownHandle")
            .field("local_addr", &self.shared.local)
            .field("shutting_down", &self.shared.stopping())
            .finish()
    }
}

impl ShutdownHandle {
    /// Starts a graceful shutdown and returns at once; `run` returns when it is complete.
    pub fn shutdown(&self) {
        self.shared.signal_shutdown();
    }

    /// Current counters of the listener, also while `run` serves on another thread.
    pub fn stats(&self) -> ListenerStats {
        self.shared.counters.snapshot()
    }
}

/// A listener serving in the background. Dropping it shuts it down gracefully.
pub struct ListenerHandle {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for ListenerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenerHandle")
            .field("local_addr", &self.shared.local)
            .field("running", &self.thread.is_some())
            .field("stats", &self.shared.counters.snapshot())
            .finish()
    }
}

impl ListenerHandle {
    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local
    }

    /// Current counters.
    pub fn stats(&self) -> ListenerStats {
        self.shared.counters.snapshot()
    }

    /// Graceful shutdown: stop accepting, stop reading (bytes the kernel already holds are
    /// still read and their complete messages delivered; a partial message never is), let
    /// callbacks finish, join every thread and release the port. Peers whose connection
    /// the kernel completed but the accept thread had not reached yet are served the same
    /// way (up to `max_connections` at a time; the rest are refused and counted). Returns
    /// the final counters.
    pub fn shutdown(mut self) -> ListenerStats {
        self.stop();
        self.stats()
    }

    fn stop(&mut self) {
        self.shared.signal_shutdown();
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            log::error!("listener {}: accept thread panicked", self.shared.local);
        }
    }
}

impl Drop for ListenerHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

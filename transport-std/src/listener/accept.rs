//! The accept loop: admitting connections, the limit, shutdown and the backlog drain.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use buffstreams_framing::LengthPrefix;
use socket2::{Domain, Socket, Type};

use super::Handler;
use super::config::{ListenerConfig, OverLimit};
use super::connection::{Connection, connection};
use super::poll::Pollers;
use crate::stats::{ListenerCounters, add, sub};
use crate::sync::relock;

pub(super) struct Registry {
    pub(super) next_id: u64,
    pub(super) streams: HashMap<u64, Arc<TcpStream>>,
    pub(super) threads: Vec<JoinHandle<()>>,
}

pub(super) struct Shared {
    pub(super) local: SocketAddr,
    pub(super) shutting_down: AtomicBool,
    pub(super) registry: Mutex<Registry>,
    pub(super) slot_freed: Condvar,
    pub(super) counters: ListenerCounters,
    /// Local address of the wake-up connection, once shutdown has made it.
    pub(super) wake_peer: Mutex<Option<SocketAddr>>,
    /// Connection threads allowed to busy-poll at once (one fewer than the CPUs).
    pub(super) pollers: Pollers,
}

impl Shared {
    pub(super) fn new(local: SocketAddr) -> Self {
        Self {
            local,
            shutting_down: AtomicBool::new(false),
            registry: Mutex::new(Registry {
                next_id: 0,
                streams: HashMap::new(),
                threads: Vec::new(),
            }),
            slot_freed: Condvar::new(),
            counters: ListenerCounters::default(),
            wake_peer: Mutex::new(None),
            pollers: Pollers::new(),
        }
    }

    pub(super) fn registry(&self) -> MutexGuard<'_, Registry> {
        relock(&self.registry)
    }

    pub(super) fn stopping(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    pub(super) fn signal_shutdown(&self) {
        if self.shutting_down.swap(true, Ordering::AcqRel) {
            return;
        }
        log::info!("listener {}: shutting down", self.local);
        self.slot_freed.notify_all();
        // Wake the accept call with a connection of our own, bound first so that the
        // backlog drain can tell it from a real peer.
        let ip = match self.local.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        let wake = || -> io::Result<()> {
            let socket = Socket::new(Domain::for_address(self.local), Type::STREAM, None)?;
            socket.bind(&SocketAddr::new(ip, 0).into())?;
            *relock(&self.wake_peer) = socket.local_addr()?.as_socket();
            socket.connect_timeout(
                &SocketAddr::new(ip, self.local.port()).into(),
                Duration::from_secs(1),
            )
        };
        if let Err(e) = wake() {
            // The accept thread still stops at its next connection or accept error.
            log::warn!(
                "listener {}: cannot wake the accept thread: {e}",
                self.local
            );
        }
    }

    /// Whether `peer` is the connection [`signal_shutdown`](Self::signal_shutdown) made.
    fn is_wake(&self, peer: SocketAddr) -> bool {
        *relock(&self.wake_peer) == Some(peer)
    }
}

pub(super) fn serve<H: LengthPrefix + 'static>(
    socket: TcpListener,
    config: ListenerConfig,
    shared: Arc<Shared>,
    handler: Arc<Handler<H>>,
) {
    let local = shared.local;
    let admit = |stream: TcpStream, peer: SocketAddr| {
        admit::<H>(stream, peer, &config, &shared, &handler);
    };
    loop {
        if config.over_limit() == OverLimit::Wait {
            let mut reg = shared.registry();
            if reg.streams.len() >= config.max_connections() {
                add(&shared.counters.accept_waits, 1);
                log::warn!(
                    "listener {local}: {} connections open, new peers wait",
                    reg.streams.len()
                );
            }
            while reg.streams.len() >= config.max_connections() && !shared.stopping() {
                reg = shared
                    .slot_freed
                    .wait(reg)
                    .unwrap_or_else(|e| e.into_inner());
            }
        }
        if shared.stopping() {
            break;
        }
        match socket.accept() {
            Ok((stream, peer)) => admit(stream, peer),
            Err(e) => {
                if shared.stopping() {
                    break;
                }
                // Out of descriptors and the like: back off instead of spinning.
                log::warn!("listener {local}: accept failed: {e}");
                thread::sleep(Duration::from_millis(10));
            }
        }
    }
    // Peers whose connection the kernel completed before shutdown may already have sent
    // whole messages; serve what they sent like everyone else's, then release the port.
    if let Err(e) = socket.set_nonblocking(true) {
        log::warn!("listener {local}: cannot drain the backlog: {e}");
    } else {
        for _ in 0..BACKLOG_DRAIN {
            match socket.accept() {
                Ok((stream, peer)) => admit(stream, peer),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break, // WouldBlock: the backlog is empty
            }
        }
    }
    drop(socket);
    let threads = {
        let mut reg = shared.registry();
        for s in reg.streams.values() {
            // Wakes blocked reads: data already queued is still returned, then end of stream.
            let _ = s.shutdown(Shutdown::Read);
        }
        std::mem::take(&mut reg.threads)
    };
    for t in threads {
        if t.join().is_err() {
            log::error!("listener {local}: a connection thread panicked outside the callback");
        }
    }
    log::info!("listener {local}: stopped");
}

/// At most this many connections are taken from the backlog after shutdown starts (Linux
/// caps a backlog at `somaxconn`, 4096 by default).
const BACKLOG_DRAIN: usize = 4096;

/// Registers an accepted connection and starts its thread, or refuses it over the limit.
fn admit<H: LengthPrefix + 'static>(
    stream: TcpStream,
    peer: SocketAddr,
    config: &ListenerConfig,
    shared: &Arc<Shared>,
    handler: &Arc<Handler<H>>,
) {
    let local = shared.local;
    if shared.stopping() && shared.is_wake(peer) {
        return;
    }
    let mut reg = shared.registry();
    if reg.streams.len() >= config.max_connections() {
        add(&shared.counters.connections_refused, 1);
        log::warn!(
            "listener {local}: refusing {peer}: {} connections open",
            reg.streams.len()
        );
        return;
    }
    // Accepted sockets inherit non-blocking mode from the listener on some systems.
    if let Err(e) = stream
        .set_nonblocking(false)
        .and_then(|()| configure(&stream, config))
    {
        log::warn!("listener {local}: cannot configure {peer}: {e}");
        return;
    }
    // One descriptor per connection, shared by the reader, the replies and shutdown.
    let stream = Arc::new(stream);
    let id = reg.next_id;
    reg.next_id += 1;
    reg.streams.insert(id, stream.clone());
    add(&shared.counters.connections_total, 1);
    add(&shared.counters.connections_open, 1);
    log::debug!("listener {local}: accepted {peer}");
    let conn = Connection::new(peer, stream.clone(), config.framing(), shared.clone());
    let (config, shared2, handler2) = (*config, shared.clone(), handler.clone());
    let spawned = thread::Builder::new()
        .name(format!("bs-conn-{peer}"))
        .spawn(move || connection::<H>(id, stream, conn, config, shared2, handler2));
    match spawned {
        Ok(t) => reg.threads.push(t),
        Err(e) => {
            log::error!("listener {local}: cannot spawn a thread for {peer}: {e}");
            reg.streams.remove(&id);
            sub(&shared.counters.connections_open, 1);
        }
    }
    // Keep the join list short on long-running servers.
    reg.threads.retain(|t| !t.is_finished());
}

fn configure(stream: &TcpStream, config: &ListenerConfig) -> io::Result<()> {
    stream.set_nodelay(config.nodelay())?;
    stream.set_write_timeout(config.write_timeout())?;
    stream.set_read_timeout(config.idle_timeout())
}

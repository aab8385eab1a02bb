//! The accept loop: admitting connections, the limit, shutdown and the backlog drain.

use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use buffstreams_framing::LengthPrefix;

use super::Handler;
use super::config::{ListenerConfig, OverLimit};
use super::connection::Connection;
use super::serve::connection;
use super::shared::Shared;
use crate::stats::{add, sub};

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
            if reg.counted() >= config.max_connections() {
                add(&shared.counters.accept_waits, 1);
                log::warn!(
                    "listener {local}: {} connections open, new peers wait",
                    reg.counted()
                );
            }
            while reg.counted() >= config.max_connections() && !shared.stopping() {
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
        for entry in reg.open.values() {
            // Wakes blocked reads: data already queued is still returned, then end of stream.
            let _ = entry.stream.shutdown(Shutdown::Read);
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
    let accepted = Instant::now();
    let now = shared.clock(accepted);
    let mut reg = shared.registry();
    if let Some(cap) = config.max_connections_per_ip()
        && reg.open_from(peer.ip()) >= cap
    {
        add(&shared.counters.per_ip_refused, 1);
        log::warn!(
            "listener {local}: refusing {peer}: {cap} connections from {} open",
            peer.ip()
        );
        return;
    }
    if reg.counted() >= config.max_connections() {
        let evicted = match config.over_limit() {
            OverLimit::Evict => reg.evict(now, config.eviction_grace()),
            _ => None,
        };
        match evicted {
            Some(victim) => {
                add(&shared.counters.evictions, 1);
                log::warn!(
                    "listener {local}: {} connections open; evicting {victim}, the longest \
                     without a message, to serve {peer}",
                    reg.open.len()
                );
            }
            None => {
                add(&shared.counters.connections_refused, 1);
                log::warn!(
                    "listener {local}: refusing {peer}: {} connections open",
                    reg.counted()
                );
                return;
            }
        }
    }
    // Accepted sockets inherit non-blocking mode from the listener on some systems.
    if let Err(e) = stream
        .set_nonblocking(false)
        .and_then(|()| configure(&stream, config))
    {
        log::warn!("listener {local}: cannot configure {peer}: {e}");
        return;
    }
    #[cfg(feature = "tls")]
    let tls = match config.tls().map(crate::tls::Session::server).transpose() {
        Ok(tls) => tls.map(Box::new),
        Err(e) => {
            log::error!("listener {local}: cannot start TLS for {peer}: {e}");
            return;
        }
    };
    // One descriptor per connection, shared by the reader, the replies and shutdown.
    let stream = Arc::new(stream);
    let (id, activity) = reg.insert(stream.clone(), peer, now);
    add(&shared.counters.connections_total, 1);
    add(&shared.counters.connections_open, 1);
    log::debug!("listener {local}: accepted {peer}");
    #[cfg_attr(not(feature = "tls"), allow(unused_mut))]
    let mut conn = Connection::new(peer, stream.clone(), config, shared.clone());
    #[cfg(feature = "tls")]
    {
        conn.tls = tls;
    }
    let (config, shared2, handler2) = (config.clone(), shared.clone(), handler.clone());
    let spawned = config
        .thread_builder(format!("bs-conn-{peer}"))
        .spawn(move || connection::<H>(id, stream, conn, activity, config, shared2, handler2));
    match spawned {
        Ok(t) => reg.threads.push(t),
        Err(e) => {
            log::error!("listener {local}: cannot spawn a thread for {peer}: {e}");
            reg.remove(id);
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

//! What the accept thread and the connection threads share: the registry of open
//! connections with each one's activity, the shutdown flag and the counters.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use socket2::{Domain, Socket, Type};

use buffstreams_framing::acked::{SessionSlot, Sessions};

use super::ProtocolErrorFn;
use super::config::ListenerConfig;
use super::poll::Pollers;
use crate::stats::ListenerCounters;
use crate::sync::relock;

/// What a connection thread tells the accept thread about itself, so that the accept thread
/// can choose whom to evict when the connection cap is reached. Written by the connection
/// thread once per read (not per message), read only when the cap is reached.
#[derive(Debug)]
pub(super) struct Activity {
    /// Nanoseconds after the listener's epoch: when the connection was accepted.
    accepted: u64,
    /// Nanoseconds after the listener's epoch at which the last message completed (0: none
    /// yet).
    last_message: AtomicU64,
    /// The thread is handling a chunk of messages (callbacks may be running).
    busy: AtomicBool,
    /// The accept thread closed this connection to make room.
    evicted: AtomicBool,
    /// A newer connection of the same acknowledged writer took its session over.
    superseded: AtomicBool,
}

impl Activity {
    /// Records that a read's messages completed at `now` (after the listener's epoch).
    pub(super) fn completed(&self, now: u64) {
        self.last_message.store(now.max(1), Ordering::Relaxed);
    }

    /// Marks the start and end of the work on one chunk (callbacks run inside).
    pub(super) fn set_busy(&self, busy: bool) {
        self.busy.store(busy, Ordering::Release);
    }

    /// Whether the accept thread evicted this connection.
    pub(super) fn evicted(&self) -> bool {
        self.evicted.load(Ordering::Acquire)
    }

    /// Whether a newer connection of its writer took its session over.
    pub(super) fn superseded(&self) -> bool {
        self.superseded.load(Ordering::Acquire)
    }

    /// Whether the listener itself ended it (evicted or superseded): its end is expected.
    pub(super) fn ended_by_us(&self) -> bool {
        self.evicted() || self.superseded()
    }
}

/// One open connection, as the registry knows it.
#[derive(Debug)]
pub(super) struct Entry {
    pub(super) stream: Arc<TcpStream>,
    pub(super) peer: SocketAddr,
    pub(super) activity: Arc<Activity>,
}

/// The open connections and their threads.
#[derive(Debug, Default)]
pub(super) struct Registry {
    next_id: u64,
    pub(super) open: HashMap<u64, Entry>,
    /// Open connections per peer address (for `max_connections_per_ip`).
    per_ip: HashMap<IpAddr, usize>,
    /// Connections evicted whose threads have not unregistered yet: they no longer count
    /// against the cap, so one newcomer evicts one connection, not one per accept.
    evicting: usize,
    pub(super) threads: Vec<JoinHandle<()>>,
}

impl Registry {
    /// Connections that count against `max_connections`.
    pub(super) fn counted(&self) -> usize {
        self.open.len().saturating_sub(self.evicting)
    }

    /// Open connections from `ip`.
    pub(super) fn open_from(&self, ip: IpAddr) -> usize {
        self.per_ip.get(&ip).copied().unwrap_or(0)
    }

    /// Registers a connection; returns its id and its activity record.
    pub(super) fn insert(
        &mut self,
        stream: Arc<TcpStream>,
        peer: SocketAddr,
        accepted: u64,
    ) -> (u64, Arc<Activity>) {
        let id = self.next_id;
        self.next_id += 1;
        let activity = Arc::new(Activity {
            accepted,
            last_message: AtomicU64::new(0),
            busy: AtomicBool::new(false),
            evicted: AtomicBool::new(false),
            superseded: AtomicBool::new(false),
        });
        *self.per_ip.entry(peer.ip()).or_insert(0) += 1;
        self.open.insert(
            id,
            Entry {
                stream,
                peer,
                activity: activity.clone(),
            },
        );
        (id, activity)
    }

    /// Unregisters a connection (its thread is ending).
    pub(super) fn remove(&mut self, id: u64) {
        let Some(entry) = self.open.remove(&id) else {
            return;
        };
        if entry.activity.evicted() {
            self.evicting = self.evicting.saturating_sub(1);
        }
        let ip = entry.peer.ip();
        if let Some(n) = self.per_ip.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                self.per_ip.remove(&ip);
            }
        }
    }

    /// Closes the connection that has gone longest without completing a message, to make
    /// room for a newcomer: a connection that never completed one before any that did (its
    /// time counted from the accept), and never one whose thread is handling messages or one
    /// accepted less than `grace` ago. Returns the evicted peer, or `None` if no connection
    /// qualifies.
    pub(super) fn evict(&mut self, now: u64, grace: Duration) -> Option<SocketAddr> {
        let grace = u64::try_from(grace.as_nanos()).unwrap_or(u64::MAX);
        let (_, entry) = self
            .open
            .iter()
            .filter(|(_, e)| {
                let a = &e.activity;
                !a.evicted()
                    && !a.busy.load(Ordering::Acquire)
                    && now.saturating_sub(a.accepted) >= grace
            })
            .min_by_key(|(_, e)| {
                let a = &e.activity;
                match a.last_message.load(Ordering::Relaxed) {
                    0 => (0, a.accepted),
                    t => (1, t),
                }
            })?;
        entry.activity.evicted.store(true, Ordering::Release);
        // Wakes its thread from a read or a reply write; it unregisters itself.
        let _ = entry.stream.shutdown(Shutdown::Both);
        self.evicting += 1;
        Some(entry.peer)
    }
}

impl Registry {
    /// Ends connection `id`, whose writer has opened a newer one (acknowledged mode): it
    /// stops reading and hands its session back. Returns whether this call ended it.
    pub(super) fn supersede(&mut self, id: u64) -> bool {
        let Some(entry) = self.open.get(&id) else {
            return false;
        };
        if entry.activity.superseded.swap(true, Ordering::AcqRel) {
            return false;
        }
        let _ = entry.stream.shutdown(Shutdown::Both);
        log::info!(
            "{}: superseded by the writer's newer connection",
            entry.peer
        );
        true
    }
}

/// The writer sessions a listener remembers, shared by its connection threads.
#[derive(Debug)]
pub(super) struct SessionTable {
    pub(super) table: Mutex<Sessions<Vec<SessionSlot>>>,
    /// Signalled when a connection hands its session back.
    pub(super) released: Condvar,
}

impl SessionTable {
    pub(super) fn new(max: usize, ttl: Duration) -> Self {
        let ttl_us = u64::try_from(ttl.as_micros()).unwrap_or(u64::MAX);
        Self {
            table: Mutex::new(Sessions::new(vec![SessionSlot::EMPTY; max.max(1)], ttl_us)),
            released: Condvar::new(),
        }
    }
}

/// State shared by the listener's handles, its accept thread and its connection threads.
pub(super) struct Shared {
    pub(super) local: SocketAddr,
    /// Zero of the nanosecond clock the activity records use.
    epoch: Instant,
    shutting_down: AtomicBool,
    registry: Mutex<Registry>,
    pub(super) slot_freed: Condvar,
    pub(super) counters: ListenerCounters,
    /// Local address of the wake-up connection, once shutdown has made it.
    wake_peer: Mutex<Option<SocketAddr>>,
    /// Connection threads allowed to busy-poll at once (one fewer than the CPUs).
    pub(super) pollers: Pollers,
    /// Told about every protocol error ([`Listener::on_protocol_error`](super::Listener::on_protocol_error)).
    pub(super) on_protocol_error: Mutex<Option<Arc<ProtocolErrorFn>>>,
    /// The writer sessions remembered in the acknowledged mode.
    pub(super) sessions: SessionTable,
}

impl Shared {
    pub(super) fn new(local: SocketAddr, config: &ListenerConfig) -> Self {
        Self {
            local,
            epoch: Instant::now(),
            shutting_down: AtomicBool::new(false),
            registry: Mutex::new(Registry::default()),
            slot_freed: Condvar::new(),
            counters: ListenerCounters::default(),
            wake_peer: Mutex::new(None),
            pollers: Pollers::new(),
            on_protocol_error: Mutex::new(None),
            sessions: SessionTable::new(
                if config.acks() {
                    config.max_sessions()
                } else {
                    1
                },
                config.session_ttl(),
            ),
        }
    }

    /// Nanoseconds since the listener was bound (never 0 after the first nanosecond).
    pub(super) fn clock(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Microseconds since the listener was bound: the acknowledged mode's clock.
    pub(super) fn micros(&self, at: Instant) -> u64 {
        self.clock(at) / 1_000
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
    pub(super) fn is_wake(&self, peer: SocketAddr) -> bool {
        *relock(&self.wake_peer) == Some(peer)
    }
}

//! Busy polling of connection sockets while a peer streams.

use std::io::{self, Read};
use std::net::TcpStream;
#[cfg(target_os = "linux")]
use std::sync::atomic::Ordering;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::thread;
use std::time::Duration;

#[cfg(target_os = "linux")]
use crate::stats::add;

/// Busy polling of connection sockets (see [`ListenerConfig::with_busy_poll`](super::ListenerConfig::with_busy_poll)), with a limit on
/// how many threads poll at once: one CPU is always left to threads that do other work.
pub(super) struct Pollers {
    active: AtomicUsize,
    max: usize,
}

impl Pollers {
    pub(super) fn new() -> Self {
        Self {
            active: AtomicUsize::new(0),
            max: thread::available_parallelism().map_or(0, |n| n.get() - 1),
        }
    }

    /// Reads into `buf`: first without sleeping, for up to `budget` (when a polling slot is
    /// free; a read it answers is counted in `polled`), then blocking as usual (with the
    /// idle timeout).
    pub(super) fn read(
        &self,
        stream: &TcpStream,
        buf: &mut [u8],
        budget: Duration,
        polled: &AtomicU64,
    ) -> io::Result<usize> {
        match self.poll(stream, buf, budget, polled) {
            Some(read) => read,
            None => (&*stream).read(buf),
        }
    }

    /// The first half of [`read`](Self::read): `None` when nothing came within `budget` (or
    /// no polling slot was free).
    pub(super) fn poll(
        &self,
        stream: &TcpStream,
        buf: &mut [u8],
        budget: Duration,
        polled: &AtomicU64,
    ) -> Option<io::Result<usize>> {
        #[cfg(target_os = "linux")]
        if !budget.is_zero() && self.enter() {
            let read = poll_read(stream, buf, budget);
            self.active.fetch_sub(1, Ordering::Relaxed);
            if read.is_some() {
                add(polled, 1);
            }
            return read;
        }
        #[cfg(not(target_os = "linux"))]
        let _ = (&self.active, self.max, stream, buf, budget, polled);
        None
    }

    #[cfg(target_os = "linux")]
    fn enter(&self) -> bool {
        self.active
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < self.max).then_some(n + 1)
            })
            .is_ok()
    }
}

/// Non-blocking reads until one returns something or `budget` is spent (`None`: nothing
/// came, read blocking now).
#[cfg(target_os = "linux")]
fn poll_read(stream: &TcpStream, buf: &mut [u8], budget: Duration) -> Option<io::Result<usize>> {
    use rustix::io::Errno;
    use rustix::net::{RecvFlags, recv};
    let started = std::time::Instant::now();
    loop {
        match recv(stream, &mut *buf, RecvFlags::DONTWAIT) {
            Ok((n, _)) => return Some(Ok(n)),
            Err(Errno::AGAIN | Errno::INTR) if started.elapsed() < budget => {
                std::hint::spin_loop();
            }
            Err(Errno::AGAIN | Errno::INTR) => return None,
            Err(e) => return Some(Err(e.into())),
        }
    }
}

//! A TCP proxy for fault injection between a writer and a listener: it forwards both ways,
//! and on command holds back what the listener sends (a stalled path), cuts connections, or
//! hands a held-back path's bytes over late, after the writer has opened its next connection.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// One proxied connection: the writer's side (`down`), the listener's side (`up`), and what
/// the listener sent while the way back was stalled.
struct Conn {
    down: TcpStream,
    up: TcpStream,
    stalled: bool,
    held: Vec<u8>,
}

#[derive(Default)]
struct Inner {
    conns: Vec<Conn>,
    /// New connections start with the way back stalled.
    stall_new: bool,
    /// Once a new connection has sent this many bytes up (a hello: 46), the older connections'
    /// held-back bytes go to the writer, then their writer sides close; the new connection's
    /// way back starts `delay` later.
    release_after: Option<(usize, Duration)>,
}

/// The proxy's controls.
#[derive(Clone)]
pub struct Proxy {
    pub addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
}

impl Proxy {
    /// A proxy on 127.0.0.1 in front of `to`.
    pub fn start(to: SocketAddr) -> Self {
        let front = TcpListener::bind("127.0.0.1:0").unwrap();
        let proxy = Self {
            addr: front.local_addr().unwrap(),
            inner: Arc::default(),
        };
        let p = proxy.clone();
        thread::spawn(move || {
            for down in front.incoming() {
                let Ok(down) = down else { return };
                let Ok(up) = TcpStream::connect(to) else {
                    let _ = down.shutdown(Shutdown::Both);
                    continue;
                };
                p.serve(down, up);
            }
        });
        proxy
    }

    fn serve(&self, down: TcpStream, up: TcpStream) {
        let id = {
            let mut inner = self.inner.lock().unwrap();
            let stalled = inner.stall_new;
            inner.conns.push(Conn {
                down: down.try_clone().unwrap(),
                up: up.try_clone().unwrap(),
                stalled,
                held: Vec::new(),
            });
            inner.conns.len() - 1
        };
        let (p, d, u) = (
            self.clone(),
            down.try_clone().unwrap(),
            up.try_clone().unwrap(),
        );
        thread::spawn(move || p.pump_up(id, d, u));
        let p = self.clone();
        thread::spawn(move || p.pump_back(id, up, down));
    }

    /// Writer to listener, as is; a release is due once `release_after` bytes went up.
    fn pump_up(&self, id: usize, mut down: TcpStream, mut up: TcpStream) {
        let mut buf = [0u8; 16 * 1024];
        let mut moved = 0usize;
        loop {
            let n = match down.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if up.write_all(&buf[..n]).is_err() {
                break;
            }
            let before = moved;
            moved += n;
            let release = self.inner.lock().unwrap().release_after;
            if let Some((at, delay)) = release
                && before < at
                && moved >= at
            {
                self.release_older_than(id, delay);
            }
        }
        let _ = up.shutdown(Shutdown::Write);
    }

    /// Hands every older connection's held-back bytes to its writer and closes its writer
    /// side; connection `id`'s way back stays stalled for `delay` more.
    fn release_older_than(&self, id: usize, delay: Duration) {
        let mut inner = self.inner.lock().unwrap();
        inner.release_after = None;
        inner.stall_new = false;
        for c in inner.conns.iter_mut().take(id) {
            let held = std::mem::take(&mut c.held);
            c.stalled = false;
            if !held.is_empty() {
                let _ = c.down.write_all(&held);
            }
            let _ = c.down.shutdown(Shutdown::Write);
        }
        if let Some(c) = inner.conns.get_mut(id) {
            c.stalled = true;
        }
        drop(inner);
        let p = self.clone();
        thread::spawn(move || {
            thread::sleep(delay);
            p.unstall(id);
        });
    }

    fn unstall(&self, id: usize) {
        let mut inner = self.inner.lock().unwrap();
        if let Some(c) = inner.conns.get_mut(id) {
            c.stalled = false;
            let held = std::mem::take(&mut c.held);
            let _ = c.down.write_all(&held);
        }
    }

    /// Listener to writer, held back while stalled. When the listener's side ends, a stalled
    /// connection's writer side stays open (a path that went quiet), else it closes.
    fn pump_back(&self, id: usize, mut up: TcpStream, mut down: TcpStream) {
        let mut buf = [0u8; 16 * 1024];
        loop {
            let n = match up.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let mut inner = self.inner.lock().unwrap();
            let c = &mut inner.conns[id];
            if c.stalled {
                c.held.extend_from_slice(&buf[..n]);
                continue;
            }
            drop(inner);
            if down.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        if !self.inner.lock().unwrap().conns[id].stalled {
            let _ = down.shutdown(Shutdown::Both);
        }
    }

    /// Holds back what the listener sends on every connection open now, and on new ones.
    pub fn stall_back(&self) {
        let mut inner = self.inner.lock().unwrap();
        inner.stall_new = true;
        for c in &mut inner.conns {
            c.stalled = true;
        }
    }

    /// The next connection (after its first `hello` bytes went up) gets the way back freed:
    /// the older connections' held-back bytes go to the writer first, then, `delay` later,
    /// the new connection's own.
    pub fn release_stalled_after_next_hello(&self, hello: usize, delay: Duration) {
        // New connections stay stalled until then: the listener's answer must not overtake.
        let mut inner = self.inner.lock().unwrap();
        inner.stall_new = true;
        inner.release_after = Some((hello, delay));
    }

    /// Resets every connection open now (both sides).
    pub fn cut_all(&self) {
        let inner = self.inner.lock().unwrap();
        for c in &inner.conns {
            let _ = c.down.shutdown(Shutdown::Both);
            let _ = c.up.shutdown(Shutdown::Both);
        }
    }
}

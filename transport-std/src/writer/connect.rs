//! Dialling: a connection within the retry policy, configured as the writer wants it.

use std::io;
use std::net::TcpStream;
use std::thread;
use std::time::Instant;

use buffstreams_framing::LengthPrefix;

use super::Shared;
use super::stream::Stream;
use crate::stats::add;

impl<H: LengthPrefix> Shared<H> {
    /// Whether the retry policy is spent: `failures` attempts, or its deadline since `started`.
    pub(super) fn out_of_budget(&self, started: Instant, failures: u32) -> bool {
        let retry = self.config.retry();
        retry.max_attempts().is_some_and(|n| failures >= n)
            || retry.deadline().is_some_and(|d| started.elapsed() >= d)
    }

    /// Connects (and under TLS shakes hands), retrying with backoff under the policy
    /// (`failures` counts the attempts that failed since `started`). A permanent TLS failure
    /// (a certificate refused either way) is not retried, and every later call returns it.
    pub(super) fn connect(&self, started: Instant, failures: &mut u32) -> io::Result<Stream> {
        loop {
            #[cfg(feature = "tls")]
            if let Some(e) = self.tls_refused.get() {
                return Err(io::Error::new(io::ErrorKind::InvalidData, e.clone()));
            }
            match self.open() {
                Ok(s) => return Ok(s),
                Err(e) => {
                    #[cfg(feature = "tls")]
                    if let Some(t) = crate::tls::tls_error(&e) {
                        add(&self.counters.tls_errors, 1);
                        if t.reason().is_permanent() {
                            self.note(log::Level::Error, format_args!("TLS: {t}; not retrying"));
                            let _ = self.tls_refused.set(t);
                            return Err(e);
                        }
                    }
                    add(&self.counters.connect_failures, 1);
                    *failures = failures.saturating_add(1);
                    if self.out_of_budget(started, *failures) {
                        return Err(e);
                    }
                    self.back_off(started, *failures, format_args!("connect failed ({e})"));
                }
            }
        }
    }

    /// One attempt: the socket, configured, and under TLS the handshake.
    fn open(&self) -> io::Result<Stream> {
        let wait = self.config.connect_timeout();
        let s = TcpStream::connect_timeout(&self.addr, wait)?;
        s.set_nodelay(self.config.nodelay())?;
        s.set_write_timeout(self.config.write_timeout())?;
        #[cfg(feature = "tls")]
        if let Some(tls) = self.config.tls() {
            let mut s = s;
            let session = crate::tls::Session::connect(tls, &mut s, wait)?;
            return Ok(Stream::tls(s, session));
        }
        Ok(Stream::plain(s))
    }

    /// Sleeps the policy's wait after `failures` failures (never past its deadline).
    pub(super) fn back_off(&self, started: Instant, failures: u32, why: std::fmt::Arguments<'_>) {
        let mut wait = self.config.retry().wait_after(failures);
        if let Some(d) = self.config.retry().deadline() {
            wait = wait.min(d.saturating_sub(started.elapsed()));
        }
        self.note(
            log::Level::Debug,
            format_args!("{why}, retrying in {wait:?}"),
        );
        thread::sleep(wait);
    }
}

//! Socket helpers of the writer: a write that reports how far it got, and a cheap check of
//! whether the peer has closed.

use std::io::{self, Write};
use std::mem::MaybeUninit;
use std::net::TcpStream;

/// Writes all of `bytes`, reporting how many were taken even on failure.
pub(super) fn write_counting(stream: &mut impl Write, bytes: &[u8]) -> (usize, io::Result<()>) {
    let mut written = 0;
    while written < bytes.len() {
        match stream.write(bytes.get(written..).unwrap_or_default()) {
            Ok(0) => return (written, Err(io::ErrorKind::WriteZero.into())),
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (written, Err(e)),
        }
    }
    (written, Ok(()))
}

/// Whether the peer has closed (FIN or reset). On Linux one `poll`, which does not take the
/// socket lock as a peek does; the peek settles it when the peer has sent us data.
pub(super) fn peer_closed(stream: &TcpStream) -> bool {
    #[cfg(target_os = "linux")]
    {
        use rustix::event::{PollFd, PollFlags, Timespec, poll};
        let mut fds = [PollFd::new(stream, PollFlags::IN | PollFlags::RDHUP)];
        let now = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        if let Ok(ready) = poll(&mut fds, Some(&now)) {
            let events = fds[0].revents();
            if ready == 0 {
                return false;
            }
            if events.intersects(PollFlags::RDHUP | PollFlags::HUP | PollFlags::ERR) {
                return true;
            }
        }
    }
    peek_closed(stream)
}

/// A non-blocking peek of one byte, no data consumed.
fn peek_closed(stream: &TcpStream) -> bool {
    let mut byte = [MaybeUninit::<u8>::uninit(); 1];
    match socket2::SockRef::from(stream)
        .recv_with_flags(&mut byte, libc::MSG_PEEK | libc::MSG_DONTWAIT)
    {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
        ),
    }
}

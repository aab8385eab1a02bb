//! TLS (feature `tls`): one rustls connection per socket, driven from the loops that already
//! read and write it. rustls is sans-io: ciphertext read from the socket is handed to it, and
//! what it has to send goes out on the socket; no second stream wraps the first.
//!
//! A connection's rustls state is shared by the threads that touch its socket (on a writer,
//! the threads that send batches and the reply thread), behind a lock that is never held
//! across a blocking socket call. Sending has a second lock, held from encrypting a batch to
//! writing its records, so records go out in the order they were sealed.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock, TryLockError};
use std::time::Duration;

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{AlertDescription, ClientConfig, ClientConnection, ProtocolVersion, ServerConfig};

use crate::sync::relock;

/// Why a TLS connection failed, in the terms one acts on (feature `tls`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TlsReason {
    /// The peer's certificate did not verify: an unknown issuer, expired or not yet valid,
    /// not valid for the name dialled, revoked, or otherwise refused.
    PeerCertificate,
    /// The peer presented no certificate where one is required.
    NoCertificate,
    /// The peer refused our certificate (or that we sent none): it sent a certificate alert.
    RefusedByPeer,
    /// No protocol version, cipher suite or application protocol in common.
    Incompatible,
    /// What arrived is not TLS: a plaintext peer, or garbage.
    NotTls,
    /// The connection closed (or was reset) during the handshake: a listener without TLS,
    /// one that is overloaded, or a network fault.
    Closed,
    /// Another violation of the protocol.
    Protocol,
}

impl TlsReason {
    /// Whether trying again with the same configuration cannot help (a certificate, or no
    /// common protocol): the writer does not retry these.
    pub const fn is_permanent(self) -> bool {
        matches!(
            self,
            Self::PeerCertificate | Self::NoCertificate | Self::RefusedByPeer | Self::Incompatible
        )
    }
}

impl std::fmt::Display for TlsReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::PeerCertificate => "the peer's certificate was refused",
            Self::NoCertificate => "the peer presented no certificate",
            Self::RefusedByPeer => "the peer refused our certificate",
            Self::Incompatible => "no TLS version or cipher suite in common",
            Self::NotTls => "the peer does not speak TLS",
            Self::Closed => "the connection closed during the TLS handshake",
            Self::Protocol => "the peer broke the TLS protocol",
        })
    }
}

/// A TLS failure: why ([`reason`](Self::reason)) and rustls's own error, when there is one
/// (feature `tls`).
#[derive(Clone, Debug)]
pub struct TlsError {
    reason: TlsReason,
    source: Option<rustls::Error>,
}

impl TlsError {
    pub(crate) fn new(reason: TlsReason, source: Option<rustls::Error>) -> Self {
        Self { reason, source }
    }

    /// Why it failed.
    pub fn reason(&self) -> TlsReason {
        self.reason
    }

    /// rustls's error, if the failure was one (not, for instance, a closed connection).
    pub fn rustls(&self) -> Option<&rustls::Error> {
        self.source.as_ref()
    }
}

impl std::fmt::Display for TlsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.source {
            Some(e) => write!(f, "{} ({e})", self.reason),
            None => write!(f, "{}", self.reason),
        }
    }
}

impl std::error::Error for TlsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_ref().map(|e| e as _)
    }
}

/// Plaintext sealed per socket write: records of at most 16 KiB, written together.
const SEAL_MAX: usize = 64 * 1024;

/// Bytes read from the socket at a time by [`Session::read`].
const SCRATCH: usize = 32 * 1024;

/// A TLS server configuration in a [`ListenerConfig`](crate::ListenerConfig): compared by
/// identity, so the configuration stays comparable.
#[derive(Clone)]
pub(crate) struct ServerTls(pub(crate) Arc<ServerConfig>);

impl PartialEq for ServerTls {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for ServerTls {}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerConfig")
    }
}

/// A TLS client configuration and the name the listener's certificate must carry.
#[derive(Clone)]
pub(crate) struct ClientTls {
    pub(crate) config: Arc<ClientConfig>,
    pub(crate) name: ServerName<'static>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// The boundaries of TLS records in the ciphertext read so far: whether one is cut, so that a
/// peer trickling a record counts as inside a frame (the frame deadline).
#[derive(Debug, Default)]
struct Records {
    header: [u8; 5],
    have: usize,
    left: usize,
}

impl Records {
    fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.left > 0 {
                let n = self.left.min(bytes.len());
                self.left -= n;
                bytes = bytes.get(n..).unwrap_or_default();
                continue;
            }
            if let (Some(slot), Some(&b)) = (self.header.get_mut(self.have), bytes.first()) {
                *slot = b;
            }
            self.have += 1;
            bytes = bytes.get(1..).unwrap_or_default();
            if self.have == self.header.len() {
                self.left = usize::from(u16::from_be_bytes([self.header[3], self.header[4]]));
                self.have = 0;
            }
        }
    }

    fn partial(&self) -> bool {
        self.have > 0 || self.left > 0
    }
}

/// What [`Session::take`] found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Taken {
    /// This many bytes of plaintext.
    Data(usize),
    /// The peer ended the stream (close_notify, or the socket's end).
    Closed,
    /// Nothing yet: read more ciphertext.
    More,
}

struct State {
    conn: rustls::Connection,
    /// Ciphertext read and not yet taken by rustls.
    inbox: Vec<u8>,
    /// How much of `inbox` rustls has taken.
    at: usize,
    eof: bool,
    records: Records,
}

/// What a sending thread needs while it holds the send lock: the records sealed for one
/// write, and where each ends (with the plaintext sealed up to it).
#[derive(Default)]
struct Sealed {
    bytes: Vec<u8>,
    marks: Vec<(usize, usize)>,
}

impl Sealed {
    /// Plaintext in the records that end at or before byte `written`.
    fn whole(&self, written: usize) -> usize {
        self.marks
            .iter()
            .take_while(|&&(end, _)| end <= written)
            .last()
            .map_or(0, |&(_, plain)| plain)
    }
}

/// One socket's TLS connection.
pub(crate) struct Session {
    state: Mutex<State>,
    /// Held from sealing records to writing them (its buffers reused from write to write).
    tx: Mutex<Sealed>,
    /// The peer's certificates, once the handshake is done.
    peer: OnceLock<Option<Box<[CertificateDer<'static>]>>>,
    /// A write stopped inside a record: the stream is cut there, nothing sealed later can be
    /// read by the peer, so every later write fails.
    cut: AtomicBool,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").finish_non_exhaustive()
    }
}

/// A rustls error as an I/O error that [`Error`](crate::Error) turns into `Error::Tls`.
pub(crate) fn io_error(e: rustls::Error) -> io::Error {
    let reason = classify(&e);
    io::Error::new(io::ErrorKind::InvalidData, TlsError::new(reason, Some(e)))
}

/// The TLS error inside an I/O error made by [`io_error`] (or by rustls's own `complete_io`).
pub(crate) fn tls_error(e: &io::Error) -> Option<TlsError> {
    let inner = e.get_ref()?;
    if let Some(t) = inner.downcast_ref::<TlsError>() {
        return Some(t.clone());
    }
    let r = inner.downcast_ref::<rustls::Error>()?;
    Some(TlsError::new(classify(r), Some(r.clone())))
}

/// Why a rustls error happened, in the terms a user acts on.
pub(crate) fn classify(e: &rustls::Error) -> TlsReason {
    use rustls::Error as E;
    use rustls::InvalidMessage as M;
    match e {
        E::InvalidCertificate(_) | E::UnsupportedNameType => TlsReason::PeerCertificate,
        E::NoCertificatesPresented => TlsReason::NoCertificate,
        E::AlertReceived(
            AlertDescription::BadCertificate
            | AlertDescription::UnsupportedCertificate
            | AlertDescription::CertificateRevoked
            | AlertDescription::CertificateExpired
            | AlertDescription::CertificateUnknown
            | AlertDescription::UnknownCA
            | AlertDescription::CertificateRequired
            | AlertDescription::AccessDenied
            | AlertDescription::DecryptError,
        ) => TlsReason::RefusedByPeer,
        E::AlertReceived(
            AlertDescription::HandshakeFailure
            | AlertDescription::ProtocolVersion
            | AlertDescription::InsufficientSecurity
            | AlertDescription::NoApplicationProtocol,
        )
        | E::PeerIncompatible(_)
        | E::NoApplicationProtocol => TlsReason::Incompatible,
        E::InvalidMessage(M::InvalidContentType | M::UnknownProtocolVersion) => TlsReason::NotTls,
        _ => TlsReason::Protocol,
    }
}

impl Session {
    /// A server's side of a new connection (the handshake happens as its bytes are read).
    pub(crate) fn server(config: &ServerTls) -> io::Result<Self> {
        let conn = rustls::ServerConnection::new(config.0.clone()).map_err(io_error)?;
        Ok(Self::new(conn.into()))
    }

    fn new(conn: rustls::Connection) -> Self {
        Self {
            state: Mutex::new(State {
                conn,
                inbox: Vec::new(),
                at: 0,
                eof: false,
                records: Records::default(),
            }),
            tx: Mutex::new(Sealed::default()),
            peer: OnceLock::new(),
            cut: AtomicBool::new(false),
        }
    }

    /// A client's handshake on `tcp`, within `wait`. Under TLS 1.3 the listener judges our
    /// certificate (or its absence) after our side of the handshake is done, so one more read
    /// (within `wait`) hears its verdict: a refusal is an error here, not a dead connection
    /// found later.
    pub(crate) fn connect(
        tls: &ClientTls,
        tcp: &mut TcpStream,
        wait: Duration,
    ) -> io::Result<Self> {
        let mut conn =
            ClientConnection::new(tls.config.clone(), tls.name.clone()).map_err(io_error)?;
        let restore = tcp.read_timeout()?;
        tcp.set_read_timeout(Some(wait))?;
        let shook = handshake(&mut conn, tcp);
        let session = Self::new(conn.into());
        // Whether the listener asked for a certificate is not exposed: under TLS 1.3 the
        // verdict is always heard (with or without our certificate).
        let verdict = shook.and_then(|()| {
            if session.protocol() == Some(ProtocolVersion::TLSv1_3) {
                session.verdict(tcp)
            } else {
                Ok(())
            }
        });
        tcp.set_read_timeout(restore)?;
        verdict.map(|()| session)
    }

    fn protocol(&self) -> Option<ProtocolVersion> {
        relock(&self.state).conn.protocol_version()
    }

    /// One read after a TLS 1.3 handshake: the listener's tickets or first data mean it
    /// accepted us; an alert or a close, that it did not. Quiet until the timeout counts as
    /// accepted (a listener that sends no tickets).
    fn verdict(&self, tcp: &TcpStream) -> io::Result<()> {
        let mut buf = [0u8; 4096];
        let n = match (&*tcp).read(&mut buf) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(());
            }
            Err(e) => return Err(closed(e)),
        };
        if n == 0 {
            return Err(closed(io::ErrorKind::UnexpectedEof.into()));
        }
        self.absorb(buf.get(..n).unwrap_or_default());
        let fed = relock(&self.state).feed();
        if fed.is_err() {
            self.send_alert(tcp);
        }
        fed
    }

    /// Ciphertext read from the socket, kept for [`take`](Self::take) (a copy: `take`'s own
    /// `input` costs none). An empty `bytes` is the end of the stream.
    pub(crate) fn absorb(&self, bytes: &[u8]) {
        let mut st = relock(&self.state);
        if bytes.is_empty() {
            st.eof = true;
        } else {
            st.records.feed(bytes);
            st.inbox.extend_from_slice(bytes);
        }
    }

    /// Plaintext into `out`, from what [`absorb`](Self::absorb) kept, then from `input`
    /// (ciphertext just read, handed to rustls without a copy of ours; what is left of it
    /// stays in `input` for the next call); what the handshake has to send goes out on `tcp`.
    /// Call it until it says [`Taken::More`].
    ///
    /// # Errors
    /// The peer broke TLS (an [`io_error`]; the alert is sent), or writing to `tcp` failed.
    pub(crate) fn take(
        &self,
        tcp: &TcpStream,
        input: &mut &[u8],
        out: &mut [u8],
    ) -> io::Result<Taken> {
        let mut st = relock(&self.state);
        let taken = st.take(input, out);
        let handshaking = st.conn.is_handshaking();
        let wants_write = st.conn.wants_write();
        if !handshaking {
            let _ = self.peer.get_or_init(|| {
                st.conn
                    .peer_certificates()
                    .map(|c| c.to_vec().into_boxed_slice())
            });
        }
        drop(st);
        if taken.is_err() {
            self.send_alert(tcp);
        } else if wants_write {
            self.flush_pending(tcp, handshaking)?;
        }
        taken
    }

    /// Reads plaintext, reading the socket as needed (blocking, with its read timeout) into
    /// `scratch`, which keeps what rustls has not taken yet between calls.
    pub(crate) fn read(
        &self,
        tcp: &TcpStream,
        out: &mut [u8],
        scratch: &mut Scratch,
    ) -> io::Result<usize> {
        loop {
            let mut input = scratch.buf.get(scratch.at..scratch.end).unwrap_or_default();
            let taken = self.take(tcp, &mut input, out);
            scratch.at = scratch.end - input.len();
            match taken? {
                Taken::Data(n) => return Ok(n),
                Taken::Closed => return Ok(0),
                Taken::More => {}
            }
            if scratch.buf.is_empty() {
                scratch.buf.resize(SCRATCH, 0);
            }
            let n = (&*tcp).read(&mut scratch.buf)?;
            (scratch.at, scratch.end) = (0, n);
            if n == 0 {
                self.absorb(&[]);
            }
        }
    }

    /// What rustls queued on its own (handshake messages, a key update): written now, unless
    /// a sending thread holds the socket, which writes it with its next records. During the
    /// handshake nothing else sends, so the write waits for the lock.
    fn flush_pending(&self, tcp: &TcpStream, handshaking: bool) -> io::Result<()> {
        let _tx = if handshaking {
            relock(&self.tx)
        } else {
            match self.tx.try_lock() {
                Ok(g) => g,
                Err(TryLockError::Poisoned(p)) => p.into_inner(),
                Err(TryLockError::WouldBlock) => return Ok(()),
            }
        };
        let mut out = Vec::new();
        relock(&self.state).conn.write_tls(&mut out)?;
        (&*tcp).write_all(&out)
    }

    /// Best effort: the alert rustls queued when it failed.
    fn send_alert(&self, tcp: &TcpStream) {
        let mut out = Vec::new();
        let _ = relock(&self.state).conn.write_tls(&mut out);
        if let Ok(_tx) = self.tx.try_lock() {
            let _ = (&*tcp).write_all(&out);
        }
    }

    /// Seals up to 64 KiB of `plain` and writes the records; returns how much of `plain` went
    /// out in records written whole (what the peer can have read). An error only when none
    /// did.
    pub(crate) fn write(&self, tcp: &TcpStream, plain: &[u8]) -> io::Result<usize> {
        let plain = plain.get(..plain.len().min(SEAL_MAX)).unwrap_or(plain);
        let mut sealed = relock(&self.tx);
        if self.cut.load(Relaxed) {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        let Sealed { bytes, marks } = &mut *sealed;
        bytes.clear();
        marks.clear();
        {
            // Sealed under the state lock, written without it: the reading thread keeps
            // reading (a peer blocked on its own writes would otherwise never read ours).
            let mut st = relock(&self.state);
            // Whatever rustls queued before (a key update, say) goes first.
            st.conn.write_tls(bytes)?;
            marks.push((bytes.len(), 0));
            let mut done = 0;
            while done < plain.len() {
                let n = st
                    .conn
                    .writer()
                    .write(plain.get(done..).unwrap_or_default())?;
                while st.conn.wants_write() {
                    st.conn.write_tls(bytes)?;
                }
                if n == 0 {
                    return Err(io::ErrorKind::WriteZero.into());
                }
                done += n;
                marks.push((bytes.len(), done));
            }
        }
        let mut written = 0;
        while written < bytes.len() {
            match (&*tcp).write(bytes.get(written..).unwrap_or_default()) {
                Ok(0) => break,
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // rustls has sealed everything: what did not go out can never follow
                    // what did. The caller counts the records that went whole, no more.
                    self.cut.store(true, Relaxed);
                    let whole = sealed.whole(written);
                    return if whole > 0 { Ok(whole) } else { Err(e) };
                }
            }
        }
        if written < bytes.len() {
            self.cut.store(true, Relaxed);
        }
        Ok(sealed.whole(written))
    }

    /// Whether the handshake is under way, or a record is cut: the peer is inside a frame.
    pub(crate) fn is_mid(&self) -> bool {
        let st = relock(&self.state);
        st.conn.is_handshaking() || st.records.partial()
    }

    /// Whether the handshake is under way.
    pub(crate) fn is_handshaking(&self) -> bool {
        relock(&self.state).conn.is_handshaking()
    }

    /// The peer's certificates (its own first), once the handshake is done.
    pub(crate) fn peer_certificates(&self) -> Option<&[CertificateDer<'static>]> {
        self.peer.get().and_then(Option::as_deref)
    }

    /// Sends close_notify (best effort, when no other thread is sending). `last`: the socket
    /// is closed right after, so the alert goes without waiting (a peer that stopped reading
    /// cannot hold the closing thread for the write timeout).
    pub(crate) fn close(&self, tcp: &TcpStream, last: bool) {
        let mut st = relock(&self.state);
        st.conn.send_close_notify();
        let mut out = Vec::new();
        let _ = st.conn.write_tls(&mut out);
        drop(st);
        if let Ok(_tx) = self.tx.try_lock() {
            if last {
                let _ = tcp.set_nonblocking(true);
            }
            let _ = (&*tcp).write_all(&out);
        }
    }
}

/// A reading thread's ciphertext buffer: `buf[at..end]` is read and not yet taken by rustls.
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    buf: Vec<u8>,
    at: usize,
    end: usize,
}

impl State {
    /// Plaintext buffered by rustls, else the inbox, then `input`, fed to it until some comes
    /// out.
    fn take(&mut self, input: &mut &[u8], out: &mut [u8]) -> io::Result<Taken> {
        loop {
            match self.conn.reader().read(out) {
                Ok(0) if !out.is_empty() => return Ok(Taken::Closed),
                Ok(n) => return Ok(Taken::Data(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(Taken::Closed),
                Err(e) => return Err(e),
            }
            if !self.inbox.is_empty() {
                self.feed()?;
            } else if !input.is_empty() {
                let before = *input;
                let n = self.conn.read_tls(input)?;
                self.records.feed(before.get(..n).unwrap_or_default());
                if n == 0 {
                    // rustls takes no more (close_notify came): the rest is dropped.
                    *input = &[];
                }
                self.conn.process_new_packets().map_err(io_error)?;
            } else {
                return Ok(if self.eof { Taken::Closed } else { Taken::More });
            }
        }
    }

    /// Hands rustls what it takes of the inbox and processes it.
    fn feed(&mut self) -> io::Result<()> {
        let mut rest = self.inbox.get(self.at..).unwrap_or_default();
        let n = self.conn.read_tls(&mut rest)?;
        self.at += n;
        if n == 0 || self.at >= self.inbox.len() {
            // All taken (or rustls takes no more: close_notify came).
            self.inbox.clear();
            self.at = 0;
        }
        self.conn.process_new_packets().map_err(io_error)?;
        Ok(())
    }
}

/// An I/O error during the handshake: the connection closed (or reset) under it.
fn closed(e: io::Error) -> io::Error {
    match e.kind() {
        io::ErrorKind::UnexpectedEof
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe => io::Error::new(
            io::ErrorKind::InvalidData,
            TlsError::new(TlsReason::Closed, None),
        ),
        _ => e,
    }
}

/// The client's handshake, blocking on `tcp`.
fn handshake(conn: &mut ClientConnection, tcp: &mut TcpStream) -> io::Result<()> {
    while conn.is_handshaking() {
        match conn.complete_io(tcp) {
            Ok((0, 0)) if conn.is_handshaking() => {
                return Err(closed(io::ErrorKind::UnexpectedEof.into()));
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(closed(e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{ClientTls, Records, Session};
    use buffstreams_test_support::pki::{Ca, Leaf, name};
    use std::io::ErrorKind;
    use std::net::{TcpListener, TcpStream};
    use std::time::Duration;

    #[test]
    fn a_write_cut_inside_a_record_fails_every_later_write() {
        let ca = Ca::new("test CA");
        let server_id = ca.leaf("listener", &["localhost"], Leaf::Server);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let config = Ca::server(&server_id, None);
        // A peer that completes the handshake, then never reads again.
        let peer = std::thread::spawn(move || {
            let (mut tcp, _) = listener.accept().unwrap();
            let mut conn = rustls::ServerConnection::new(config).unwrap();
            while conn.is_handshaking() {
                conn.complete_io(&mut tcp).unwrap();
            }
            while conn.wants_write() {
                conn.write_tls(&mut tcp).unwrap();
            }
            std::thread::sleep(Duration::from_secs(5));
        });
        let mut tcp = TcpStream::connect(addr).unwrap();
        tcp.set_write_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let tls = ClientTls {
            config: ca.client(None),
            name: name("localhost"),
        };
        let session = Session::connect(&tls, &mut tcp, Duration::from_secs(5)).unwrap();
        let chunk = vec![7u8; 64 * 1024];
        // Until the peer's window and our send buffer are full and a write times out, part of
        // its records written.
        let mut first_failure = None;
        for _ in 0..10_000 {
            match session.write(&tcp, &chunk) {
                Ok(n) if n == chunk.len() => continue,
                other => {
                    first_failure = Some(other);
                    break;
                }
            }
        }
        assert!(first_failure.is_some(), "the writes never stopped");
        // Nothing sealed after the cut can follow it: every later write fails at once.
        let later = session.write(&tcp, &chunk);
        assert_eq!(later.map_err(|e| e.kind()), Err(ErrorKind::BrokenPipe));
        drop(tcp);
        peer.join().unwrap();
    }

    #[test]
    fn records_cut_anywhere_are_seen_as_cut() {
        // Two records: 3 bytes of body, then 0.
        let stream = [23, 3, 3, 0, 3, 1, 2, 3, 21, 3, 3, 0, 0];
        for cut in 0..=stream.len() {
            let mut r = Records::default();
            r.feed(&stream[..cut]);
            let whole = cut == 0 || cut == 8 || cut == stream.len();
            assert_eq!(r.partial(), !whole, "cut at {cut}");
            r.feed(&stream[cut..]);
            assert!(!r.partial());
        }
    }
}

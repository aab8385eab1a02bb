//! TLS against peers we did not write, mutual TLS on, every message checked both ways:
//! Python's standard `ssl` module (`examples/peers/tls_peer.py`, protobuf-delimited frames),
//! the `openssl s_client` / `s_server` command-line tools (Debian's `openssl`), and
//! tokio-rustls under tokio-util's `Framed` + `LengthDelimitedCodec`, each as client of our
//! `Listener` and as server for our `Writer`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::Duration;

use buffstreams_test_support::pki::{Ca, Identity, Leaf, name};
use buffstreams_transport_std::{
    BigEndian, LengthPrefix, Listener, ListenerConfig, ListenerHandle, RetryPolicy, Varint32,
    Writer, WriterConfig,
};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio_util::codec::{Framed, LengthDelimitedCodec};

use super::harness::{ran, run, unavailable};

const N: usize = 2_000;

/// What the listener's callback records, per message.
type Shared<T> = Arc<Mutex<Vec<T>>>;
const WAIT: Duration = Duration::from_secs(60);

/// Message `i`, as `tls_peer.py` makes it.
fn message(i: usize) -> Vec<u8> {
    let len = (i * 7919) % 5000;
    (0..len).map(|k| (i + k) as u8).collect()
}

fn reversed(mut m: Vec<u8>) -> Vec<u8> {
    m.reverse();
    m
}

/// The CA, the listener's and the device's certificates, as files for the other programs.
struct Files {
    ca: Ca,
    server: Identity,
    device: Identity,
    dir: std::path::PathBuf,
}

impl Files {
    fn new(tag: &str) -> Self {
        let ca = Ca::new("interop CA");
        let server = ca.leaf("listener", &["localhost", "127.0.0.1"], Leaf::Server);
        let device = ca.leaf("device-7", &[], Leaf::Client);
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("tls-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let write = |f: &str, s: &str| std::fs::write(dir.join(f), s).unwrap();
        write("ca.pem", &ca.pem);
        write("server.pem", &server.cert_pem);
        write("server.key", &server.key_pem);
        write("device.pem", &device.cert_pem);
        write("device.key", &device.key_pem);
        Self {
            ca,
            server,
            device,
            dir,
        }
    }

    fn path(&self, f: &str) -> String {
        self.dir.join(f).to_str().unwrap().to_string()
    }

    /// The `openssl` arguments that trust the CA and present `who`'s certificate and key.
    fn openssl_identity(&self, who: &str) -> [String; 6] {
        [
            "-CAfile".into(),
            self.path("ca.pem"),
            "-cert".into(),
            self.path(&format!("{who}.pem")),
            "-key".into(),
            self.path(&format!("{who}.key")),
        ]
    }

    /// Our mutual-TLS listener, echoing every message reversed; it records the messages and
    /// the common name's bytes of the certificate each came with.
    fn listener<H: LengthPrefix + Send + 'static>(
        &self,
        config: ListenerConfig,
    ) -> (ListenerHandle, Shared<Vec<u8>>, Shared<bool>) {
        let got: Shared<Vec<u8>> = Arc::default();
        let named: Shared<bool> = Arc::default();
        let (g, n) = (got.clone(), named.clone());
        let device = self.device.chain[0].clone();
        let h = Listener::<H>::bind(
            "127.0.0.1:0",
            config
                .with_max_frame_len(1 << 16)
                .with_tls(Ca::server(&self.server, Some(&self.ca))),
        )
        .unwrap()
        .spawn_with_reply(move |m, conn| {
            let presented = conn.peer_certificates().and_then(|c| c.first());
            n.lock().unwrap().push(presented == Some(&device));
            g.lock().unwrap().push(m.to_vec());
            conn.reply(&reversed(m.to_vec()))?;
            Ok(())
        })
        .unwrap();
        (h, got, named)
    }

    /// Our mutual-TLS writer to `addr`, collecting replies.
    fn writer<H: LengthPrefix + Send + 'static>(
        &self,
        addr: SocketAddr,
    ) -> (Writer<H>, mpsc::Receiver<Vec<u8>>) {
        let (tx, rx) = mpsc::channel();
        let config = WriterConfig::new()
            .with_max_frame_len(1 << 16)
            .with_tls(self.ca.client(Some(&self.device)), name("localhost"))
            .with_retry(
                RetryPolicy::new()
                    .with_initial_backoff(Duration::from_millis(20))
                    .with_deadline(Some(WAIT)),
            )
            .with_on_reply(move |r| {
                let _ = tx.send(r.to_vec());
            });
        (Writer::dial(addr, config).unwrap(), rx)
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What our listener's callback recorded: messages `0..N` in order, each with the device's
/// certificate, and no TLS failure.
fn listener_got_every_message(
    server: &ListenerHandle,
    got: &Shared<Vec<u8>>,
    named: &Shared<bool>,
) {
    let got = got.lock().unwrap();
    assert_eq!(got.len(), N);
    for (i, m) in got.iter().enumerate() {
        assert_eq!(*m, message(i), "message {i}");
    }
    assert!(
        named.lock().unwrap().iter().all(|&b| b),
        "the device's certificate"
    );
    assert_eq!(server.stats().tls_errors, 0);
}

/// A child process killed on drop, its stdout lines on a channel.
struct Proc {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Proc {
    fn start(cmd: &mut Command) -> Self {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        let out = BufReader::new(child.stdout.take().unwrap());
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in out.lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self { child, lines }
    }

    fn line(&self) -> String {
        self.lines
            .recv_timeout(WAIT)
            .expect("the peer printed its line")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn python() -> Option<&'static str> {
    for python in ["/usr/bin/python3", "python3"] {
        if run(Command::new(python).args(["-c", "import ssl; assert ssl.HAS_TLSv1_3"])).is_ok() {
            return Some(python);
        }
    }
    unavailable("python-ssl", "no python3 with TLS 1.3 in its ssl module")
}

fn peer_script() -> String {
    super::harness::peers_dir()
        .join("tls_peer.py")
        .to_str()
        .unwrap()
        .to_string()
}

#[test]
fn python_ssl_client_to_our_listener() {
    let Some(python) = python() else { return };
    let f = Files::new("py-client");
    let (server, got, named) = f.listener::<Varint32>(ListenerConfig::new());
    let port = server.local_addr().port().to_string();
    let n = N.to_string();
    let p = Proc::start(Command::new(python).args([
        &peer_script(),
        "client",
        &port,
        &f.path("ca.pem"),
        &f.path("device.pem"),
        &f.path("device.key"),
        &n,
    ]));
    assert_eq!(p.line(), format!("ok {N} peer=listener"));
    listener_got_every_message(&server, &got, &named);
    ran("python-ssl client");
}

#[test]
fn our_writer_to_a_python_ssl_server() {
    let Some(python) = python() else { return };
    let f = Files::new("py-server");
    let n = N.to_string();
    let p = Proc::start(Command::new(python).args([
        &peer_script(),
        "server",
        &f.path("ca.pem"),
        &f.path("server.pem"),
        &f.path("server.key"),
        &n,
    ]));
    let first = p.line();
    let port: u16 = first
        .strip_prefix("listening ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("expected `listening PORT`, got {first:?}"));
    let (w, replies) = f.writer::<Varint32>(SocketAddr::from(([127, 0, 0, 1], port)));
    for i in 0..N {
        w.write(&message(i)).unwrap();
    }
    for i in 0..N {
        let r = replies.recv_timeout(WAIT).expect("a reply");
        assert_eq!(r, reversed(message(i)), "reply {i}");
    }
    assert_eq!(p.line(), format!("ok {N} peer=device-7"));
    let stats = w.close();
    assert_eq!((stats.tls_errors, stats.dead_lettered), (0, 0));
    ran("python-ssl server");
}

fn openssl() -> bool {
    if run(Command::new("openssl").arg("version")).is_ok() {
        return true;
    }
    unavailable::<()>("openssl", "no `openssl` command (Debian openssl)");
    false
}

/// `BigEndian<4>` frames of messages `0..n`.
fn frames(n: usize, each: impl Fn(usize) -> Vec<u8>) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..n {
        let m = each(i);
        out.extend_from_slice(&(m.len() as u32).to_be_bytes());
        out.extend_from_slice(&m);
    }
    out
}

/// Reads `BigEndian<4>` frames from `r` until `n` came; each must be `each(i)`.
fn expect_frames(r: &mut impl Read, n: usize, each: impl Fn(usize) -> Vec<u8>) {
    for i in 0..n {
        let mut head = [0u8; 4];
        r.read_exact(&mut head)
            .unwrap_or_else(|e| panic!("frame {i}'s header: {e}"));
        let mut m = vec![0u8; u32::from_be_bytes(head) as usize];
        r.read_exact(&mut m)
            .unwrap_or_else(|e| panic!("frame {i}: {e}"));
        assert_eq!(m, each(i), "frame {i}");
    }
}

#[test]
fn openssl_s_client_to_our_listener() {
    if !openssl() {
        return;
    }
    let f = Files::new("s-client");
    let (server, got, named) = f.listener::<BigEndian<4>>(ListenerConfig::new());
    let connect = server.local_addr().to_string();
    let mut child = Command::new("openssl")
        .args([
            "s_client",
            "-quiet",
            // Binary input: no line is a command (`Q` would quit, `K` update keys).
            "-nocommands",
            "-connect",
            &connect,
            "-servername",
            "localhost",
            "-verify_return_error",
            "-verify_hostname",
            "localhost",
        ])
        .args(f.openssl_identity("device"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start openssl s_client");
    let mut stdin = child.stdin.take().unwrap();
    let input = frames(N, message);
    // Written from another thread while the replies are read here; the pipe is handed back
    // and kept open until then (s_client ends at its input's end).
    let writing = thread::spawn(move || {
        stdin.write_all(&input).unwrap();
        stdin
    });
    let mut out = child.stdout.take().unwrap();
    expect_frames(&mut out, N, |i| reversed(message(i)));
    let stdin = writing.join().expect("s_client took its input");
    let _ = child.kill();
    let _ = child.wait();
    drop(stdin);
    listener_got_every_message(&server, &got, &named);
    ran("openssl s_client");
}

#[test]
fn our_writer_to_openssl_s_server() {
    if !openssl() {
        return;
    }
    let f = Files::new("s-server");
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // s_server sends what it reads on its input once a client is connected: the replies.
    let replies = frames(N, |i| reversed(message(i)));
    let mut server = Command::new("openssl")
        .args([
            "s_server",
            "-quiet",
            "-naccept",
            "1",
            "-accept",
            &format!("127.0.0.1:{port}"),
            "-Verify",
            "1",
            "-verify_return_error",
        ])
        .args(f.openssl_identity("server"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start openssl s_server");
    // s_server accepts one connection: no probe, the writer's retry policy waits for it.
    let (w, back) = f.writer::<BigEndian<4>>(SocketAddr::from(([127, 0, 0, 1], port)));
    // s_server is one thread: its output is read while we write, or both sides block.
    let mut out = server.stdout.take().unwrap();
    let reading = thread::spawn(move || expect_frames(&mut out, N, message));
    let mut stdin = server.stdin.take().unwrap();
    let feeding = thread::spawn(move || {
        stdin.write_all(&replies).unwrap();
        stdin
    });
    for i in 0..N {
        w.write(&message(i)).unwrap();
    }
    w.flush();
    reading.join().expect("s_server read every message");
    for i in 0..N {
        let r = back.recv_timeout(WAIT).expect("a reply from s_server");
        assert_eq!(r, reversed(message(i)), "reply {i}");
    }
    let stats = w.close();
    let stdin = feeding.join().expect("s_server took the replies");
    let _ = server.kill();
    let _ = server.wait();
    drop(stdin);
    assert_eq!((stats.tls_errors, stats.dead_lettered), (0, 0));
    ran("openssl s_server");
}

#[test]
fn tokio_rustls_under_framed_to_our_listener() {
    let f = Files::new("tokio-client");
    let (server, got, named) = f.listener::<BigEndian<4>>(ListenerConfig::new());
    let addr = server.local_addr();
    let connector = tokio_rustls::TlsConnector::from(f.ca.client(Some(&f.device)));
    crate::common::runtime().block_on(async move {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let tls = connector.connect(name("localhost"), tcp).await.unwrap();
        let mut framed = Framed::new(tls, LengthDelimitedCodec::new());
        for i in 0..N {
            framed.feed(Bytes::from(message(i))).await.unwrap();
        }
        SinkExt::<Bytes>::flush(&mut framed).await.unwrap();
        for i in 0..N {
            let r = tokio::time::timeout(WAIT, framed.next())
                .await
                .expect("a reply in time")
                .expect("a reply")
                .unwrap();
            assert_eq!(r.to_vec(), reversed(message(i)), "reply {i}");
        }
    });
    listener_got_every_message(&server, &got, &named);
    ran("tokio-rustls client");
}

#[test]
fn our_writer_to_tokio_rustls_under_framed() {
    let f = Files::new("tokio-server");
    let rt = crate::common::runtime();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Ca::server(&f.server, Some(&f.ca)));
    let device = f.device.chain[0].clone();
    // Reads N messages, checks each and the device's certificate, replies to each reversed.
    let serving = rt.spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let tls = acceptor.accept(tcp).await.unwrap();
        let presented = tls.get_ref().1.peer_certificates().map(|c| c[0].clone());
        assert_eq!(presented, Some(device), "the device's certificate");
        let mut framed = Framed::new(tls, LengthDelimitedCodec::new());
        for i in 0..N {
            let m = framed.next().await.expect("a message").unwrap();
            assert_eq!(m.to_vec(), message(i), "message {i}");
            framed
                .feed(Bytes::from(reversed(m.to_vec())))
                .await
                .unwrap();
        }
        SinkExt::<Bytes>::flush(&mut framed).await.unwrap();
    });
    let (w, replies) = f.writer::<BigEndian<4>>(addr);
    for i in 0..N {
        w.write(&message(i)).unwrap();
    }
    for i in 0..N {
        let r = replies.recv_timeout(WAIT).expect("a reply");
        assert_eq!(r, reversed(message(i)), "reply {i}");
    }
    rt.block_on(serving)
        .expect("the tokio-rustls server checked every message");
    let stats = w.close();
    assert_eq!((stats.tls_errors, stats.dead_lettered), (0, 0));
    ran("tokio-rustls server");
}

//! Runs a peer program (`examples/peers/`) as a process, bounded in time, and speaks its
//! line protocol: a spec file of messages for `write`, `listening PORT` then one line per
//! message and a last `end` / `error ...` line for `read`.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

/// How long one peer process may run.
const PEER_TIMEOUT: Duration = Duration::from_secs(120);

/// One line of a spec (what a peer writes) or of a peer's output (what it read).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Item {
    /// A protobuf `google.protobuf.Any` message the peer builds and frames with its library.
    Msg { url: String, value: Vec<u8> },
    /// A payload the peer frames itself (the Go peer).
    Frame(Vec<u8>),
    /// Bytes written as they are: hand-made headers, a frame cut short.
    Raw(Vec<u8>),
    /// The peer read to a clean end of the stream.
    End,
    /// The peer stopped at an error (its own words).
    Error(String),
}

impl Item {
    /// Equal, counting any error as equal to any other: the peers word their errors differently.
    pub fn agrees(&self, other: &Item) -> bool {
        match (self, other) {
            (Item::Error(_), Item::Error(_)) => true,
            _ => self == other,
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return "-".into();
    }
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        write!(s, "{b:02x}").unwrap();
    }
    s
}

fn unhex(field: &str) -> Vec<u8> {
    if field == "-" {
        return Vec::new();
    }
    (0..field.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&field[i..i + 2], 16).expect("hex from a peer"))
        .collect()
}

fn parse_line(line: &str) -> Item {
    let mut f = line.splitn(3, ' ');
    match (f.next(), f.next(), f.next()) {
        (Some("msg"), Some(url), Some(value)) => Item::Msg {
            url: if url == "-" {
                String::new()
            } else {
                url.into()
            },
            value: unhex(value),
        },
        (Some("frame"), Some(payload), None) => Item::Frame(unhex(payload)),
        (Some("end"), None, None) => Item::End,
        (Some("error"), ..) => Item::Error(line["error ".len()..].into()),
        _ => panic!("unexpected line from a peer: {line:?}"),
    }
}

/// Writes `items` as a spec file the peers read; its path.
fn spec_file(items: &[Item]) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "interop-spec-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let mut out = String::new();
    for item in items {
        match item {
            Item::Msg { url, value } => {
                let url = if url.is_empty() { "-" } else { url };
                writeln!(out, "msg {url} {}", hex(value)).unwrap();
            }
            Item::Frame(payload) => writeln!(out, "frame {}", hex(payload)).unwrap(),
            Item::Raw(bytes) => writeln!(out, "raw {}", hex(bytes)).unwrap(),
            Item::End | Item::Error(_) => unreachable!("not a spec line"),
        }
    }
    std::fs::write(&path, out).unwrap();
    path
}

/// A peer program: the command that starts it, before its `write` / `read` arguments.
pub struct Peer {
    pub name: String,
    program: PathBuf,
    args: Vec<String>,
}

/// Skips (with the reason) unless CI demands every peer (`BUFFSTREAMS_NO_SKIP`), then fails.
pub fn unavailable<T>(peer: &str, reason: &str) -> Option<T> {
    assert!(
        std::env::var_os("BUFFSTREAMS_NO_SKIP").is_none(),
        "BUFFSTREAMS_NO_SKIP is set, and the {peer} peer cannot run: {reason}"
    );
    eprintln!("skipped: the {peer} peer cannot run: {reason}");
    None
}

/// Records that `peer` really ran an exchange (appends to `target/tmp/interop-ran/<family>`,
/// the family being the first word of its name: `go`, `python`, `java`, `tokio-util`), so
/// that CI can require each peer to have run rather than skipped.
pub fn ran(peer: &str) {
    let family = peer.split(' ').next().unwrap_or(peer);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("interop-ran");
    std::fs::create_dir_all(&dir).unwrap();
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(family))
        .unwrap();
    writeln!(f, "{peer}").unwrap();
}

/// `examples/peers/`.
pub fn peers_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("peers")
}

/// Runs `cmd` to completion; its stdout, or what went wrong.
pub fn run(cmd: &mut Command) -> Result<String, String> {
    match cmd.output() {
        Ok(out) if out.status.success() => Ok(String::from_utf8_lossy(&out.stdout).into_owned()),
        Ok(out) => Err(format!(
            "{cmd:?} exited with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )),
        Err(e) => Err(format!("{cmd:?}: {e}")),
    }
}

/// Kills the child on drop: a failing test leaves no peer behind.
struct Reaper(Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Peer {
    pub fn new(name: &str, program: impl Into<PathBuf>, args: &[&str]) -> Self {
        Self {
            name: name.into(),
            program: program.into(),
            args: args.iter().map(|a| a.to_string()).collect(),
        }
    }

    fn spawn(&self, args: &[&str]) -> (Reaper, mpsc::Receiver<String>) {
        let mut child = Command::new(&self.program)
            .args(&self.args)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("{}: cannot start {:?}: {e}", self.name, self.program));
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in stdout.lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        (Reaper(child), rx)
    }

    fn line(&self, rx: &mpsc::Receiver<String>, what: &str) -> Option<String> {
        match rx.recv_timeout(PEER_TIMEOUT) {
            Ok(line) => Some(line),
            Err(mpsc::RecvTimeoutError::Disconnected) => None,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                panic!("{}: no {what} within {PEER_TIMEOUT:?}", self.name)
            }
        }
    }

    /// The peer writes `items` on one connection to `addr`, then closes it. Its last line:
    /// `wrote N`, or `error after N: ...` when the other side closed first.
    pub fn write(&self, addr: SocketAddr, items: &[Item], extra: &[&str]) -> String {
        let spec = spec_file(items);
        let addr = addr.to_string();
        let mut args = extra.to_vec();
        args.extend(["write", addr.as_str(), spec.to_str().unwrap()]);
        let (mut child, rx) = self.spawn(&args);
        let mut last = None;
        while let Some(line) = self.line(&rx, "end of its writing") {
            last = Some(line);
        }
        let status = child.0.wait().unwrap();
        let _ = std::fs::remove_file(spec);
        assert!(
            status.success(),
            "{}: write exited with {status}",
            self.name
        );
        ran(&self.name);
        last.unwrap_or_else(|| panic!("{}: write printed nothing", self.name))
    }

    /// Starts the peer reading: it listens on 127.0.0.1 and accepts one connection.
    pub fn read(&self, extra: &[&str]) -> Reading<'_> {
        let mut args = extra.to_vec();
        args.push("read");
        let (child, rx) = self.spawn(&args);
        let first = self
            .line(&rx, "listening line")
            .unwrap_or_else(|| panic!("{}: read ended before listening", self.name));
        let port = first
            .strip_prefix("listening ")
            .and_then(|p| p.parse::<u16>().ok())
            .unwrap_or_else(|| panic!("{}: expected `listening PORT`, got {first:?}", self.name));
        Reading {
            peer: self,
            child,
            rx,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }

    /// What the peer reads from `bytes` sent as they are, then the end of the stream.
    pub fn read_raw(&self, bytes: &[u8], extra: &[&str]) -> Vec<Item> {
        let reading = self.read(extra);
        let mut stream = TcpStream::connect(reading.addr).unwrap();
        // The peer may stop reading at an error and close: what it read is its answer.
        let _ = stream.write_all(bytes);
        let _ = stream.shutdown(Shutdown::Write);
        reading.finish()
    }

    /// The bytes the peer puts on the wire for `items`, caught by a plain socket.
    pub fn capture(&self, items: &[Item], extra: &[&str]) -> Vec<u8> {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let catcher = thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            stream.set_read_timeout(Some(PEER_TIMEOUT)).unwrap();
            let mut bytes = Vec::new();
            stream.read_to_end(&mut bytes).unwrap();
            bytes
        });
        let last = self.write(addr, items, extra);
        assert!(last.starts_with("wrote "), "{}: {last}", self.name);
        catcher.join().unwrap()
    }
}

/// A peer reading, from [`Peer::read`].
pub struct Reading<'a> {
    peer: &'a Peer,
    child: Reaper,
    rx: mpsc::Receiver<String>,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl Reading<'_> {
    /// Everything the peer read, after the connection ended: its lines, the last one `end` or
    /// `error ...`.
    pub fn finish(mut self) -> Vec<Item> {
        let mut items = Vec::new();
        while let Some(line) = self.peer.line(&self.rx, "message or end") {
            items.push(parse_line(&line));
        }
        let status = self.child.0.wait().unwrap();
        assert!(
            status.success(),
            "{}: read exited with {status}",
            self.peer.name
        );
        assert!(
            matches!(items.last(), Some(Item::End | Item::Error(_))),
            "{}: read stopped without `end` or `error`",
            self.peer.name
        );
        ran(&self.peer.name);
        items
    }
}

/// Panics naming the peer, the case and the first differing byte, if `got` is not `want`.
pub fn same_bytes(what: &str, got: &[u8], want: &[u8]) {
    if got == want {
        return;
    }
    let at = got
        .iter()
        .zip(want)
        .position(|(a, b)| a != b)
        .unwrap_or(got.len().min(want.len()));
    let show = |b: &[u8]| hex(&b[at.min(b.len())..(at + 8).min(b.len())]);
    panic!(
        "{what}: first difference at byte {at} (got {} bytes, want {}; there got {} want {})",
        got.len(),
        want.len(),
        show(got),
        show(want)
    );
}

/// Compares what a peer read (or we read) with what was expected, item by item: the first
/// differing message is named with its first differing byte.
pub fn same_items(what: &str, got: &[Item], want: &[Item]) {
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        match (g, w) {
            (Item::Msg { url: gu, value: gv }, Item::Msg { url: wu, value: wv }) => {
                assert_eq!(gu, wu, "{what}: message {i}: type_url");
                same_bytes(&format!("{what}: message {i} ({wu}): value"), gv, wv);
            }
            (Item::Frame(g), Item::Frame(w)) => {
                same_bytes(&format!("{what}: message {i}"), g, w);
            }
            _ => assert!(g.agrees(w), "{what}: item {i}: got {g:?}, want {w:?}"),
        }
    }
    assert_eq!(
        got.len(),
        want.len(),
        "{what}: {} items read, {} expected; the last read: {:?}",
        got.len(),
        want.len(),
        got.last()
    );
}

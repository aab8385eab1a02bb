//! The example programs run as a user runs them: separate processes over 127.0.0.1.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

const LONG: Duration = Duration::from_secs(60);

/// Waits for `child` to exit and collects its output; kills it and fails after `LONG`.
fn finish(child: Child, what: &str) -> Output {
    let pid = child.id().to_string();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || tx.send(child.wait_with_output()));
    match rx.recv_timeout(LONG) {
        Ok(output) => output.expect("output"),
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid]).status();
            panic!("{what} did not exit within {LONG:?}");
        }
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Starts `server` with `args` on an ephemeral port; returns it with its address, read from
/// its first line of output.
fn server(args: &[&str]) -> (Child, String, BufReader<ChildStdout>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_server"))
        .args(["--addr", "127.0.0.1:0"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start server");
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let (tx, rx) = mpsc::channel();
    let reader = thread::spawn(move || {
        let mut line = String::new();
        out.read_line(&mut line).expect("read");
        tx.send(line).expect("send");
        out
    });
    let line = rx.recv_timeout(LONG).expect("server printed nothing");
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    (child, addr, reader.join().expect("reader"))
}

/// The server's output after its first line, once it has exited.
fn server_rest(child: Child, mut out: BufReader<ChildStdout>) -> (Output, String) {
    let o = finish(child, "server");
    let mut rest = String::new();
    out.read_to_string(&mut rest).expect("read");
    (o, rest)
}

#[test]
fn server_counts_every_message_the_client_streams() {
    let (srv, addr, out) = server(&["--exit-after", "20000"]);
    let client = Command::new(env!("CARGO_BIN_EXE_client"))
        .args(["--addr", &addr, "--count", "20000", "--payload", "300"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start client");
    let c = finish(client, "client");
    assert!(c.status.success(), "client: {}", stdout(&c));
    assert!(stdout(&c).contains("sent 20000 messages (6080000 bytes on the wire)"));
    assert!(
        stdout(&c).contains("0 dead-lettered, 0 in doubt"),
        "client: {}",
        stdout(&c)
    );
    let (s, rest) = server_rest(srv, out);
    assert!(s.status.success());
    assert!(
        rest.contains("stopped: 20000 messages (6000000 bytes) in"),
        "server said: {rest}"
    );
}

#[test]
fn echo_server_and_request_client_speak_go_buffstreams_framing() {
    let (srv, addr, out) = server(&[
        "--format",
        "buffstreams",
        "--echo",
        "--print",
        "--exit-after",
        "3",
    ]);
    let mut client = Command::new(env!("CARGO_BIN_EXE_client"))
        .args(["--addr", &addr, "--format", "buffstreams", "--request"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start client");
    let mut stdin = client.stdin.take().expect("stdin");
    stdin
        .write_all(b"hello\nworld\nthird line\n")
        .expect("write");
    drop(stdin);
    let c = finish(client, "client");
    assert!(c.status.success(), "client: {}", stdout(&c));
    let lines: Vec<String> = stdout(&c).lines().map(str::to_string).collect();
    assert_eq!(lines[..3], ["hello", "world", "third line"]);
    assert!(lines[3].starts_with("3 round trips"), "{lines:?}");
    let (s, rest) = server_rest(srv, out);
    assert!(s.status.success());
    assert!(rest.contains(": third line"), "server said: {rest}");
    assert!(
        rest.contains("3 messages (20 bytes) in, 3 replies out"),
        "server said: {rest}"
    );
}

#[test]
fn print_shows_text_escaped_and_binary_as_a_preview() {
    let (srv, addr, out) = server(&["--print", "--exit-after", "3"]);
    let mut s = std::net::TcpStream::connect(&addr).expect("connect");
    for m in [
        &b"plain text"[..],
        b"bell\x07and\ttab",
        &[0, 1, 2, 0xff][..],
    ] {
        s.write_all(&(m.len() as u32).to_be_bytes()).unwrap();
        s.write_all(m).unwrap();
    }
    drop(s);
    let (status, rest) = server_rest(srv, out);
    assert!(status.status.success(), "{rest}");
    assert!(rest.lines().any(|l| l == "plain text"), "{rest}");
    assert!(rest.contains("bell\\u{7}and\\ttab"), "{rest}");
    assert!(
        rest.contains("[4 bytes, not UTF-8] \\x00\\x01\\x02\\xff"),
        "{rest}"
    );
}

#[test]
fn manager_example_delivers_everything_and_shows_the_typed_errors() {
    let o = Command::new(env!("CARGO_BIN_EXE_manager"))
        .args(["--messages", "2000"])
        .output()
        .expect("run manager");
    let out = stdout(&o);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains("4 threads x 3 addresses x 2000 messages: 24000 received"),
        "{out}"
    );
    assert!(out.contains("is already open"), "{out}");
    assert!(out.contains("is not open"), "{out}");
    assert!(out.contains("again after close_listener"), "{out}");
}

#[test]
fn protobuf_example_round_trips_prost_messages() {
    let o = Command::new(env!("CARGO_BIN_EXE_protobuf"))
        .args(["--count", "3000"])
        .output()
        .expect("run protobuf");
    let out = stdout(&o);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains("3000 readings encoded, sent, decoded and checked"),
        "{out}"
    );
    assert!(
        out.contains("listener: 3001 messages, 0 callback errors"),
        "{out}"
    );
}

#[test]
fn siege_serves_newcomers_while_an_attacker_holds_every_slot() {
    let o = Command::new(env!("CARGO_BIN_EXE_siege"))
        .args(["--idle", "60", "--half-header", "20", "--clients", "5"])
        .args(["--max-connections", "50"])
        .output()
        .expect("run siege");
    let out = stdout(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("attacker: 80 connections opened"), "{out}");
    assert!(out.contains("while held: 50 connections open"), "{out}");
    assert!(out.contains("5 new clients served"), "{out}");
    // The attacker's last 30 came while every held connection was inside its grace period:
    // refused. The newcomers came after it: each was served, evicting where it had to.
    let closed = out
        .lines()
        .find_map(|l| l.strip_prefix("closed by the listener: "))
        .expect("a closing line");
    let evicted: u64 = closed.split(' ').next().unwrap().parse().unwrap();
    assert!(closed.contains(" evicted, 30 refused"), "{out}");
    assert!((1..=5).contains(&evicted), "{out}");
    let open = format!("attacker's connections still open: {} of 80", 50 - evicted);
    assert!(out.contains(&open), "{out}");
}

#[test]
fn tokio_example_echoes_and_checks_every_message() {
    let o = Command::new(env!("CARGO_BIN_EXE_tokio"))
        .args(["--count", "20000", "--payload", "300"])
        .output()
        .expect("run tokio");
    let out = stdout(&o);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains("20000 messages of 300 bytes echoed and checked"),
        "{out}"
    );
}

#[test]
fn bench_without_arguments_runs_every_peer_side_by_side() {
    // The default run, shortened: one round of one second per peer.
    let o = Command::new(env!("CARGO_BIN_EXE_bench"))
        .args(["--rounds", "1", "--seconds", "1"])
        .output()
        .expect("run bench");
    let out = stdout(&o);
    assert!(o.status.success(), "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("side by side: 1 rounds of 1 s per peer"),
        "{out}"
    );
    assert!(
        lines[1].contains("vs std-baseline") && lines[1].contains("vs tokio"),
        "{out}"
    );
    for (line, peer) in lines[2..].iter().zip([
        "std-baseline",
        "buffstreams",
        "framing",
        "tokio",
        "tokio-framing",
    ]) {
        assert!(line.starts_with(peer), "{out}");
    }
    assert_eq!(lines.len(), 7, "{out}");
    assert!(
        lines[2].split_whitespace().nth(3) == Some("1.00x"),
        "the baseline against itself: {out}"
    );
}

#[test]
fn bad_flags_exit_with_usage() {
    for bin in [
        env!("CARGO_BIN_EXE_server"),
        env!("CARGO_BIN_EXE_client"),
        env!("CARGO_BIN_EXE_manager"),
        env!("CARGO_BIN_EXE_protobuf"),
        env!("CARGO_BIN_EXE_siege"),
        env!("CARGO_BIN_EXE_tokio"),
        env!("CARGO_BIN_EXE_bench"),
    ] {
        let o = Command::new(bin).arg("--bogus").output().expect("run");
        assert_eq!(o.status.code(), Some(2), "{bin}");
        assert!(!o.stderr.is_empty(), "{bin}");
    }
}

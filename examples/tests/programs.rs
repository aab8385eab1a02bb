//! The example programs run as a user runs them: separate processes over 127.0.0.1.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use buffstreams_transport_std::ListenerConfig;

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
        .and_then(|rest| rest.split_whitespace().next())
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
        stdout(&c).contains("0 dead-lettered, 0 in doubt, 0 replies read"),
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
fn server_and_client_over_mutual_tls_from_pem_files() {
    use buffstreams_test_support::pki::{Ca, Leaf};
    let ca = Ca::new("programs CA");
    let server_id = ca.leaf("server", &["localhost"], Leaf::Server);
    let client_id = ca.leaf("client", &[], Leaf::Client);
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("programs-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = |name: &str, pem: &str| {
        let path = dir.join(name);
        std::fs::write(&path, pem).unwrap();
        path.to_str().unwrap().to_string()
    };
    let ca_pem = file("ca.pem", &ca.pem);
    let (server_pem, server_key) = (
        file("server.pem", &server_id.cert_pem),
        file("server.key", &server_id.key_pem),
    );
    let (client_pem, client_key) = (
        file("client.pem", &client_id.cert_pem),
        file("client.key", &client_id.key_pem),
    );
    let (srv, addr, out) = server(&[
        "--exit-after",
        "1000",
        "--ca",
        &ca_pem,
        "--cert",
        &server_pem,
        "--key",
        &server_key,
    ]);
    // A plain client: its connection is closed, its message never counted (below), and the
    // server stays up. (A plain writer cannot know: the kernel took its message.)
    let plain = Command::new(env!("CARGO_BIN_EXE_client"))
        .args(["--addr", &addr, "--count", "1"])
        .output()
        .expect("run client");
    assert!(plain.status.success(), "{}", stdout(&plain));
    let client = Command::new(env!("CARGO_BIN_EXE_client"))
        .args(["--addr", &addr, "--count", "1000", "--payload", "300"])
        .args(["--ca", &ca_pem, "--cert", &client_pem, "--key", &client_key])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start client");
    let c = finish(client, "client");
    assert!(c.status.success(), "client: {}", stdout(&c));
    assert!(
        stdout(&c).contains("sent 1000 messages"),
        "client: {}",
        stdout(&c)
    );
    let (s, rest) = server_rest(srv, out);
    assert!(s.status.success());
    assert!(
        rest.contains("stopped: 1000 messages (300000 bytes) in"),
        "server said: {rest}"
    );
    assert!(rest.contains(", 1 TLS failures"), "server said: {rest}");
    // A flag alone is a usage error.
    let usage = Command::new(env!("CARGO_BIN_EXE_client"))
        .args(["--ca", &ca_pem])
        .output()
        .expect("run client");
    assert_eq!(usage.status.code(), Some(2));
    let _ = std::fs::remove_dir_all(&dir);
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

/// `siege` at a small scale (80 held connections against a cap of 50, 5 newcomers), plain or
/// (`--tls`) against a mutual-TLS listener with half-open handshakes; its output.
fn small_siege(tls: bool) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_siege"));
    if tls {
        cmd.arg("--tls");
    }
    let o = cmd
        .args(["--idle", "60", "--half-header", "20", "--clients", "5"])
        .args(["--max-connections", "50"])
        .output()
        .expect("run siege");
    let out = stdout(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("attacker: 80 connections opened"), "{out}");
    assert!(out.contains("while held: 50 connections open"), "{out}");
    assert!(out.contains("5 new clients served"), "{out}");
    out
}

/// How many connections the listener evicted, and its whole closing line.
fn evicted(out: &str) -> (u64, &str) {
    let closed = out
        .lines()
        .find_map(|l| l.strip_prefix("closed by the listener: "))
        .expect("a closing line");
    (closed.split(' ').next().unwrap().parse().unwrap(), closed)
}

#[test]
fn siege_serves_newcomers_while_an_attacker_holds_every_slot() {
    let out = small_siege(false);
    // The attacker's last 30 came while every held connection was inside its grace period:
    // refused. The newcomers came after it: each was served, evicting where it had to.
    let (evicted, closed) = evicted(&out);
    assert!(closed.contains(" evicted, 30 refused"), "{out}");
    assert!((1..=5).contains(&evicted), "{out}");
    let open = format!("attacker's connections still open: {} of 80", 50 - evicted);
    assert!(out.contains(&open), "{out}");
}

/// The same against a mutual-TLS listener: the attacker's half-header connections send half
/// a ClientHello, the newcomers shake hands before their round trip, and each is served.
#[test]
fn siege_tls_serves_newcomers_while_half_open_handshakes_hold_every_slot() {
    let out = small_siege(true);
    let (evicted, _) = evicted(&out);
    assert!((1..=5).contains(&evicted), "{out}");
}

/// The siege with every default: 2,000 held connections (1,500 idle, 500 half-header) against
/// `ListenerConfig::new()` (1,024 connections, 1 s eviction grace, 10 s frame deadline). Every
/// newcomer must be served, and the process must stay under one thread per connection slot
/// (plus a few) and 128 MiB resident (about 70 MiB measured: a 64 KiB read buffer and a stack
/// per connection). A listener that kept a thread or a buffer per attacker connection would not.
#[test]
fn siege_with_the_defaults_serves_every_newcomer_within_bounds() {
    let max_threads = (ListenerConfig::new().max_connections() + 16).to_string();
    let o = Command::new(env!("CARGO_BIN_EXE_siege"))
        .args(["--max-threads", &max_threads, "--max-rss-mib", "128"])
        .output()
        .expect("run siege");
    let out = stdout(&o);
    assert!(
        o.status.success(),
        "{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(out.contains("attacker: 2000 connections opened"), "{out}");
    assert!(out.contains("while held: 1024 connections open"), "{out}");
    assert!(out.contains("20 new clients served"), "{out}");
    assert!(out.contains("every new client served"), "{out}");
}

#[test]
fn tokio_example_echoes_and_checks_every_message() {
    // Framed + Codec (the default), then the async reader and writer.
    for api in ["codec", "reader-writer"] {
        let o = Command::new(env!("CARGO_BIN_EXE_tokio"))
            .args(["--count", "20000", "--payload", "300", "--api", api])
            .output()
            .expect("run tokio");
        let out = stdout(&o);
        assert!(o.status.success(), "{api}: {out}");
        assert!(
            out.contains("20000 messages of 300 bytes echoed and checked"),
            "{api}: {out}"
        );
        assert_eq!(out.contains("Framed + Codec"), api == "codec", "{out}");
    }
}

#[test]
fn smoltcp_bench_prints_one_json_object_per_run_beside_the_hand_written_loop() {
    let o = Command::new(env!("CARGO_BIN_EXE_smoltcp"))
        .args(["--rounds", "1", "--seconds", "0.1", "--json"])
        .output()
        .expect("run smoltcp");
    let out = stdout(&o);
    assert!(o.status.success(), "{out}");
    let runs: Vec<&str> = out.lines().collect();
    let names: Vec<&str> = runs
        .iter()
        .map(|l| {
            assert!(
                l.starts_with("{\"run\":\"") && l.ends_with("\"ok\":true}"),
                "{l}"
            );
            l.split('"').nth(3).unwrap_or_default()
        })
        .collect();
    assert_eq!(
        names,
        [
            "raw",
            "hand-written",
            "hand-written",
            "writer",
            "writer-batch",
            "writer",
            "writer-acked",
            "writer-acked"
        ],
        "{out}"
    );
    // Every Writer run has its ratio to the hand-written loop of its size.
    for l in &runs[3..] {
        let ratio = l
            .split("\"vs_hand_written\":")
            .nth(1)
            .and_then(|r| r.split(',').next())
            .and_then(|r| r.parse::<f64>().ok());
        assert!(ratio.is_some_and(|r| r > 0.0), "{l}");
    }
}

/// Runs `bench` with `args`, which must succeed (it exits non-zero when a message or a
/// connection failed); its stdout.
fn bench(args: &[&str]) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_bench"))
        .args(args)
        .output()
        .expect("run bench");
    let out = stdout(&o);
    assert!(o.status.success(), "{out}");
    out
}

#[test]
fn bench_without_arguments_runs_every_peer_side_by_side() {
    // The default run, shortened: one round of one second per peer. Its stderr is checked
    // too, so it keeps the whole output.
    let o = Command::new(env!("CARGO_BIN_EXE_bench"))
        .args(["--rounds", "1", "--seconds", "1"])
        .output()
        .expect("run bench");
    let out = stdout(&o);
    assert!(o.status.success(), "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with(
            "side by side: std-baseline, buffstreams, buffstreams-acked, framing, tokio, tokio-codec, tokio-framing; 1 round(s) of 1 s"
        ),
        "{out}"
    );
    assert!(
        lines[1].contains("vs std-baseline") && lines[1].contains("vs tokio"),
        "{out}"
    );
    for (line, peer) in lines[2..].iter().zip([
        "std-baseline ",
        "buffstreams ",
        "buffstreams-acked ",
        "framing ",
        "tokio ",
        "tokio-codec ",
        "tokio-framing ",
    ]) {
        assert!(line.starts_with(peer), "{out}");
    }
    assert_eq!(lines.len(), 11, "{out}");
    assert!(lines[9].starts_with("(medians of 1 round(s)"), "{out}");
    // The machine's state is the baseline's rate of this run.
    let baseline: f64 = lines[2].split_whitespace().nth(1).unwrap().parse().unwrap();
    let state = lines[10]
        .strip_prefix("(the machine's state: std-baseline at ")
        .and_then(|r| r.split(' ').next())
        .and_then(|r| r.parse::<f64>().ok());
    assert!(
        state.is_some_and(|s| (s - baseline).abs() <= 0.051),
        "{out}"
    );
    assert!(
        lines[2].split_whitespace().nth(3) == Some("1.00x"),
        "the baseline against itself: {out}"
    );
    // The live rate went to stderr, one line per peer and second.
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.lines()
            .any(|l| l.trim_start().starts_with("tokio-framing")),
        "{err}"
    );
}

#[test]
fn bench_markdown_states_the_machine_even_without_the_baseline_among_its_peers() {
    let out = bench(&[
        "--peer",
        "buffstreams,framing",
        "--rounds",
        "1",
        "--seconds",
        "1",
        "--markdown",
    ]);
    let state = out
        .split("std-baseline at ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|r| r.parse::<f64>().ok());
    assert!(state.is_some_and(|s| s > 0.0), "{out}");
    assert!(
        out.contains("| `buffstreams` |") && out.contains("| `framing` |"),
        "{out}"
    );
}

#[test]
fn bench_rtt_shows_percentiles_beside_raw() {
    let out = bench(&["--rtt", "--peer", "buffstreams", "--seconds", "1"]);
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("round trips: raw, buffstreams;"),
        "{out}"
    );
    for head in ["p50", "p90", "p99", "p99.9", "vs raw"] {
        assert!(lines[1].contains(head), "{out}");
    }
    assert!(
        lines[2].starts_with("raw") && lines[2].ends_with("1.00x"),
        "{out}"
    );
    assert!(lines[3].starts_with("buffstreams"), "{out}");
    assert_eq!(lines.len(), 4, "{out}");
}

#[test]
fn bench_tls_peers_side_by_side_with_a_ratio_to_tokio_rustls() {
    // Every message written arrived, with the right size, over TLS on both peers.
    let out = bench(&[
        "--peer",
        "buffstreams-tls,tokio-rustls",
        "--rounds",
        "1",
        "--seconds",
        "1",
        "--markdown",
    ]);
    assert!(out.contains("vs tokio-rustls |"), "{out}");
    let row = |peer: &str| {
        out.lines()
            .find(|l| l.starts_with(&format!("| `{peer}` |")))
            .unwrap_or_else(|| panic!("no row for {peer}: {out}"))
            .to_string()
    };
    assert!(row("tokio-rustls").ends_with("| 1.00× |"), "{out}");
    assert!(row("buffstreams-tls").contains('×'), "{out}");
}

#[test]
fn bench_handshakes_counts_tls_connections_for_both_servers() {
    // Non-zero exit if any client connection failed.
    let out = bench(&["--handshakes", "--rounds", "1", "--seconds", "1"]);
    for peer in ["buffstreams-tls", "tokio-rustls"] {
        let line = out
            .lines()
            .find(|l| l.starts_with(peer))
            .unwrap_or_else(|| panic!("no line for {peer}: {out}"));
        let rate: f64 = line
            .split_whitespace()
            .nth(1)
            .and_then(|r| r.parse().ok())
            .unwrap_or_else(|| panic!("no rate: {line}"));
        assert!(rate > 0.0, "{line}");
        assert!(line.ends_with("x tokio-rustls"), "{line}");
    }
    let refused = Command::new(env!("CARGO_BIN_EXE_bench"))
        .args(["--handshakes", "--peer", "buffstreams"])
        .output()
        .expect("run bench");
    assert_eq!(refused.status.code(), Some(2));
}

/// Runs `client` with `args`, which must fail with exit status 1; its stderr.
fn client_fails(args: &[&str]) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_client"))
        .args(args)
        .output()
        .expect("run client");
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(1), "{err}");
    err
}

/// Every program, as users find them.
const PROGRAMS: [(&str, &str); 8] = [
    ("server", env!("CARGO_BIN_EXE_server")),
    ("client", env!("CARGO_BIN_EXE_client")),
    ("manager", env!("CARGO_BIN_EXE_manager")),
    ("protobuf", env!("CARGO_BIN_EXE_protobuf")),
    ("siege", env!("CARGO_BIN_EXE_siege")),
    ("tokio", env!("CARGO_BIN_EXE_tokio")),
    ("smoltcp", env!("CARGO_BIN_EXE_smoltcp")),
    ("bench", env!("CARGO_BIN_EXE_bench")),
];

#[test]
fn help_goes_to_stdout_with_every_default() {
    for (name, bin) in PROGRAMS {
        let o = Command::new(bin).arg("--help").output().expect("run");
        let out = stdout(&o);
        assert_eq!(o.status.code(), Some(0), "{name}: {out}");
        assert!(o.stderr.is_empty(), "{name}");
        assert!(out.contains(&format!("Usage: {name}")), "{name}: {out}");
        // Example invocations, each naming the program.
        let examples = out.split("Examples:\n").nth(1).unwrap_or_default();
        let shown = examples.lines().filter(|l| l.contains(name)).count();
        assert!(
            shown >= 2,
            "{name}: fewer than two examples in --help:\n{out}"
        );
        let v = Command::new(bin).arg("--version").output().expect("run");
        assert_eq!(
            (v.status.code(), stdout(&v).trim()),
            (
                Some(0),
                format!("{name} {}", env!("CARGO_PKG_VERSION")).as_str()
            ),
            "{name} --version"
        );
        // Every flag that takes a value says its default (or why it has none).
        for line in out.lines().filter(|l| l.trim_start().starts_with("--")) {
            let flag = line.split_whitespace().next().unwrap();
            if line.contains(" <")
                && ![
                    "--peer",
                    "--count",
                    "--exit-after",
                    "--seconds",
                    "--flush-every",
                    "--idle-connections",
                    "--max-connections",
                ]
                .contains(&flag)
            {
                let at = out.find(line).unwrap();
                let rest = &out[at..];
                let next = rest[line.len()..]
                    .find("\n  -")
                    .map_or(rest.len(), |n| n + line.len());
                assert!(
                    rest[..next].contains("default"),
                    "{name} {flag} has no default in --help:\n{out}"
                );
            }
        }
    }
}

#[test]
fn bad_values_name_their_flag() {
    for (name, bin, flag) in [
        ("server", env!("CARGO_BIN_EXE_server"), "--max"),
        ("client", env!("CARGO_BIN_EXE_client"), "--count"),
        ("manager", env!("CARGO_BIN_EXE_manager"), "--threads"),
        ("protobuf", env!("CARGO_BIN_EXE_protobuf"), "--count"),
        ("siege", env!("CARGO_BIN_EXE_siege"), "--idle"),
        ("tokio", env!("CARGO_BIN_EXE_tokio"), "--payload"),
        ("smoltcp", env!("CARGO_BIN_EXE_smoltcp"), "--rounds"),
        ("bench", env!("CARGO_BIN_EXE_bench"), "--connections"),
    ] {
        let o = Command::new(bin)
            .args([flag, "many"])
            .output()
            .expect("run");
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{name}");
        assert!(
            err.contains(&format!("'many' for '{flag}")),
            "{name}: {err}"
        );
        assert!(o.stdout.is_empty(), "{name}");
    }
    // A negative count is a bad value, not an unknown flag.
    for (name, bin) in [
        ("client", env!("CARGO_BIN_EXE_client")),
        ("protobuf", env!("CARGO_BIN_EXE_protobuf")),
        ("tokio", env!("CARGO_BIN_EXE_tokio")),
    ] {
        let o = Command::new(bin)
            .args(["--count", "-1"])
            .output()
            .expect("run");
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{name}: {err}");
        assert!(
            err.contains("invalid value '-1' for '--count"),
            "{name}: {err}"
        );
    }
    // An address without a port says what is expected.
    for bin in [env!("CARGO_BIN_EXE_server"), env!("CARGO_BIN_EXE_client")] {
        let o = Command::new(bin)
            .args(["--addr", "localhost"])
            .output()
            .expect("run");
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(err.contains("expected HOST:PORT"), "{err}");
    }
    // A value out of its range, and a format that cannot carry the maximum.
    let o = Command::new(env!("CARGO_BIN_EXE_server"))
        .args(["--format", "buffstreams", "--max", "70000"])
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--max is at most 65535"));
}

#[test]
fn errors_name_what_failed_without_a_backtrace() {
    // An address in use.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let o = Command::new(env!("CARGO_BIN_EXE_server"))
        .args(["--addr", &addr])
        .stdin(Stdio::null())
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert_eq!(
        err.trim(),
        format!("server: cannot listen on {addr}: address already in use")
    );
    // Nobody listening.
    drop(taken);
    let err = client_fails(&["--addr", &addr, "--count", "1"]);
    assert!(
        err.starts_with(&format!(
            "client: cannot connect to {addr}: connection refused (retried for "
        )),
        "{err}"
    );
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "{err}"
    );
}

#[test]
fn a_format_mismatch_is_reported_at_once_with_a_hint() {
    // The server reads 4-byte big-endian headers; the client sends Go BuffStreams ones.
    let mut srv = Command::new(env!("CARGO_BIN_EXE_server"))
        .args([
            "--addr",
            "127.0.0.1:0",
            "--exit-after",
            "1",
            "--seconds",
            "20",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start server");
    let mut out = BufReader::new(srv.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let addr = line.split_whitespace().nth(2).unwrap().to_string();
    let mut err = BufReader::new(srv.stderr.take().unwrap());
    let c = Command::new(env!("CARGO_BIN_EXE_client"))
        .args(["--addr", &addr, "--count", "5", "--format", "buffstreams"])
        .output()
        .expect("run client");
    assert!(c.status.success(), "{}", stdout(&c));
    // Reported while the server runs, not only in its last line.
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut first = String::new();
        err.read_line(&mut first).unwrap();
        tx.send(first).unwrap();
    });
    let first = rx.recv_timeout(LONG).expect("no report on stderr");
    // `dc 01 00 a5`: the 3-byte header of 110 bytes and the first payload byte, read as one
    // big-endian length.
    assert!(
        first.starts_with("server: peer 127.0.0.1:")
            && first
                .trim_end()
                .ends_with("sent a header declaring 3.7 GB; is it using --format buffstreams?"),
        "{first}"
    );
    let _ = srv.kill();
    let _ = srv.wait();

    // The request client, when a reply does not parse.
    let fake = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let fake_addr = fake.local_addr().unwrap().to_string();
    thread::spawn(move || {
        let (mut s, _) = fake.accept().unwrap();
        let mut request = [0u8; 4 + 5];
        s.read_exact(&mut request).unwrap();
        s.write_all(&[0xdc, 0x01, 0x00]).unwrap();
        s.write_all(&[0xa5; 110]).unwrap();
    });
    let mut c = Command::new(env!("CARGO_BIN_EXE_client"))
        .args(["--addr", &fake_addr, "--request"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(b"hello\n").unwrap();
    let c = finish(c, "client");
    let err = String::from_utf8_lossy(&c.stderr);
    assert_eq!(c.status.code(), Some(1), "{err}");
    assert_eq!(
        err.trim(),
        "client: the reply to request 0 does not parse: the server sent a header declaring 3.7 GB; \
         is it using --format buffstreams?"
    );
}

#[test]
fn sigterm_stops_the_server_gracefully_with_its_counters() {
    let (srv, addr, out) = server(&[]);
    let mut s = std::net::TcpStream::connect(&addr).expect("connect");
    s.write_all(&[0, 0, 0, 2, b'h', b'i']).unwrap();
    drop(s);
    // Wait until it was counted, then ask the server to stop as a service manager would.
    thread::sleep(Duration::from_millis(300));
    let status = Command::new("kill")
        .args(["-TERM", &srv.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let (o, rest) = server_rest(srv, out);
    assert_eq!(o.status.code(), Some(0), "{rest}");
    assert!(rest.contains("stopping (signal)"), "{rest}");
    assert!(rest.contains("stopped: 1 messages (2 bytes) in"), "{rest}");
}

#[test]
fn a_streaming_client_reads_the_echoes_of_an_echo_server() {
    let (srv, addr, out) = server(&["--echo", "--exit-after", "100000"]);
    let client = Command::new(env!("CARGO_BIN_EXE_client"))
        .args(["--addr", &addr, "--count", "100000"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start client");
    let c = finish(client, "client");
    let said = stdout(&c);
    assert!(c.status.success(), "client: {said}");
    assert!(said.contains("sent 100000 messages"), "{said}");
    assert!(
        said.contains("0 dead-lettered, 0 in doubt, 100000 replies read"),
        "{said}"
    );
    assert!(
        said.contains("in doubt: messages the kernel had taken"),
        "{said}"
    );
    let (s, rest) = server_rest(srv, out);
    assert!(s.status.success(), "{rest}");
    assert!(rest.contains("100000 replies out"), "{rest}");
}

#[test]
fn unknown_flags_exit_with_usage() {
    for (name, bin) in PROGRAMS {
        let o = Command::new(bin).arg("--bogus").output().expect("run");
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{name}");
        assert!(
            err.contains("'--bogus'") && err.contains("Usage:"),
            "{name}: {err}"
        );
    }
}

#[test]
fn acked_server_and_client_account_for_every_message() {
    let (srv, addr, out) = server(&["--acks", "--exit-after", "20000"]);
    let c = Command::new(env!("CARGO_BIN_EXE_client"))
        .args(["--addr", &addr, "--count", "20000", "--acks"])
        .output()
        .expect("run client");
    let said = stdout(&c);
    assert!(c.status.success(), "client: {said}");
    assert!(
        said.contains("0 dead-lettered") && said.contains("20000 acknowledged"),
        "{said}"
    );
    let (s, rest) = server_rest(srv, out);
    assert!(s.status.success(), "{rest}");
    assert!(rest.contains("stopped: 20000 messages"), "{rest}");
    assert!(
        rest.contains("0 connections superseded, 0 refused handshakes"),
        "{rest}"
    );

    // An acknowledged client and a plain server: refused, and said so.
    let (srv, addr, out) = server(&["--seconds", "10"]);
    let err = client_fails(&["--addr", &addr, "--count", "1", "--acks"]);
    assert!(
        err.starts_with(&format!(
            "client: cannot connect to {addr}: acknowledged mode: the listener closed the connection without a welcome: it does not speak the acknowledged mode"
        )),
        "{err}"
    );
    let mut srv = srv;
    let _ = srv.kill();
    let _ = srv.wait();
    drop(out);
}

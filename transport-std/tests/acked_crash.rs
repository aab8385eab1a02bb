//! The acknowledged mode across process crashes: the listener's process killed with SIGKILL
//! mid-stream and restarted on the same port (every message delivered or dead-lettered, and
//! every repeat marked `may_repeat`), and the writer's process killed and a new writer
//! started (what the listener saw of the dead session is a prefix, with no gaps).
//!
//! The other process is this test binary again, running one of the `child_*` tests with the
//! environment variable below set; without it those tests return at once.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use buffstreams_transport_std::{
    BigEndian, Listener, ListenerConfig, RetryPolicy, SessionId, Writer, WriterConfig,
};
use common::LONG;
use common::proxy::Proxy;

const CHILD: &str = "BUFFSTREAMS_ACKED_CHILD";

fn message(i: u64) -> Vec<u8> {
    let mut m = vec![0x7e; 110];
    m[..8].copy_from_slice(&i.to_be_bytes());
    m
}

fn index(m: &[u8]) -> u64 {
    u64::from_be_bytes(m[..8].try_into().unwrap())
}

/// An acknowledged writer that outlasts a listener's restart (1,000 attempts within `LONG`),
/// and the indices of the messages it dead-letters.
fn surviving_writer() -> (WriterConfig, Arc<Mutex<Vec<u64>>>) {
    let dead = Arc::new(Mutex::new(Vec::new()));
    let d = dead.clone();
    let config = WriterConfig::new()
        .with_acks(true)
        .with_reply_wait(LONG)
        .with_retry(
            RetryPolicy::new()
                .with_max_attempts(Some(1000))
                .with_deadline(Some(LONG)),
        )
        .with_dead_letter(move |m| d.lock().unwrap().push(index(m)));
    (config, dead)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process, killed (SIGKILL) when dropped: a failing test leaves none behind.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// This binary again, running only the test `name`, with `CHILD` set to `arg`.
fn child(name: &str, arg: &str) -> Killed {
    Killed(
        Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                name,
                "--include-ignored",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(CHILD, arg)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    )
}

/// One delivery as a child listener reports it: `D index seq may_repeat`.
type Record = (u64, u64, bool);

/// Collects a child listener's records; returns once it printed `ready`.
fn records(child: &mut Killed, into: Arc<Mutex<Vec<Record>>>) -> thread::JoinHandle<()> {
    let out = BufReader::new(child.0.stdout.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = thread::spawn(move || {
        for line in out.lines() {
            let Ok(line) = line else { break };
            // The test harness may have started the line (`test child_listener ... `).
            if line.ends_with("ready") {
                let _ = tx.send(());
            }
            let f: Vec<&str> = line.split(' ').collect();
            if let ["D", i, seq, repeat] = f[..] {
                into.lock().unwrap().push((
                    i.parse().unwrap(),
                    seq.parse().unwrap(),
                    repeat == "true",
                ));
            }
        }
    });
    rx.recv_timeout(LONG)
        .expect("the child listener never got ready");
    reader
}

/// In the child: an acknowledged listener on the port in `CHILD` that prints every delivery
/// before its callback returns (so an acknowledged message is always printed).
#[test]
#[ignore = "the other process of the crash tests: runs only when they start it"]
fn child_listener() {
    let Ok(port) = std::env::var(CHILD) else {
        return;
    };
    let listener = Listener::<BigEndian<4>>::bind(
        format!("127.0.0.1:{port}").as_str(),
        ListenerConfig::new().with_acks(true),
    )
    .unwrap();
    println!("ready");
    listener.run_with_reply(|m, conn| {
        let d = conn.delivery().unwrap();
        // Line-buffered stdout: one write per line, into the pipe before the ack.
        writeln!(
            std::io::stdout(),
            "D {} {} {}",
            index(m),
            d.seq,
            d.may_repeat
        )?;
        Ok(())
    });
}

/// In the child: an acknowledged writer streaming 2,000,000 messages to the port in `CHILD`.
#[test]
#[ignore = "the other process of the crash tests: runs only when they start it"]
fn child_writer() {
    let Ok(port) = std::env::var(CHILD) else {
        return;
    };
    let writer: Writer = Writer::dial(
        format!("127.0.0.1:{port}").as_str(),
        WriterConfig::new().with_acks(true),
    )
    .unwrap();
    for i in 0..2_000_000 {
        writer.write(&message(i)).unwrap();
    }
    writer.close();
}

#[test]
fn a_listener_killed_mid_stream_loses_nothing() {
    if std::env::var_os(CHILD).is_some() {
        return;
    }
    const N: u64 = 300_000;
    let port = free_port();
    let first = Arc::new(Mutex::new(Vec::new()));
    let second = Arc::new(Mutex::new(Vec::new()));
    let mut one = child("child_listener", &port.to_string());
    let reader_one = records(&mut one, first.clone());
    let (config, dead) = surviving_writer();
    let writer: Writer = Writer::dial(format!("127.0.0.1:{port}").as_str(), config).unwrap();
    let streaming = thread::spawn(move || {
        for i in 0..N {
            writer.write(&message(i)).unwrap();
        }
        writer.close()
    });
    // Kill it mid-stream, then start another on the same port.
    let deadline = Instant::now() + LONG;
    while first.lock().unwrap().len() < 50_000 {
        assert!(
            Instant::now() < deadline,
            "the first listener got too little"
        );
        thread::sleep(Duration::from_millis(1));
    }
    drop(one); // SIGKILL
    reader_one.join().unwrap();
    let mut two = child("child_listener", &port.to_string());
    let reader_two = records(&mut two, second.clone());
    let stats = streaming.join().unwrap();
    // Everything acknowledged was printed before its ack: stop the second listener and read
    // the rest of its output.
    drop(two);
    reader_two.join().unwrap();

    let first = first.lock().unwrap();
    let second = second.lock().unwrap();
    let dead = dead.lock().unwrap();
    let mut seen: HashMap<u64, Vec<bool>> = HashMap::new();
    for &(i, _, repeat) in first.iter().chain(second.iter()) {
        seen.entry(i).or_default().push(repeat);
    }
    let missing: Vec<u64> = (0..N)
        .filter(|i| !seen.contains_key(i) && !dead.contains(i))
        .collect();
    let repeats: Vec<(&u64, &Vec<bool>)> = seen.iter().filter(|(_, r)| r.len() > 1).collect();
    eprintln!(
        "first listener {} deliveries, second {}, {} delivered twice, {} marked may_repeat, \
         {} dead-lettered, writer {stats:?}",
        first.len(),
        second.len(),
        repeats.len(),
        second.iter().filter(|r| r.2).count(),
        dead.len()
    );
    // The kill came mid-stream: the first process delivered some but not all, and the
    // writer had to send something again.
    assert!(
        !first.is_empty() && (first.len() as u64) < N,
        "the kill did not come mid-stream: the first listener delivered {} of {N}",
        first.len()
    );
    assert!(stats.resent > 0, "nothing was re-sent: {stats:?}");
    // Within one process nothing is delivered twice, marked or not.
    for (who, records) in [("first", &*first), ("second", &*second)] {
        let mut once = std::collections::HashSet::new();
        let twice: Vec<u64> = records
            .iter()
            .filter(|r| !once.insert(r.0))
            .map(|r| r.0)
            .collect();
        assert!(
            twice.is_empty(),
            "the {who} listener delivered {} messages twice, first {:?}",
            twice.len(),
            twice.first()
        );
    }
    assert!(
        missing.is_empty(),
        "{} missing, first {:?}",
        missing.len(),
        missing.first()
    );
    // A repeat is always told: its later delivery says it may repeat.
    for (i, r) in &repeats {
        assert_eq!(r.len(), 2, "message {i} delivered {} times", r.len());
        assert!(r[1], "message {i} delivered again without may_repeat");
    }
    // The first listener never saw a re-sent message; nothing was given up.
    assert!(first.iter().all(|r| !r.2));
    assert!(dead.is_empty(), "{} dead-lettered", dead.len());
    assert_eq!((stats.acked, stats.dead_lettered), (N, 0), "{stats:?}");
}

/// Waits until `records` holds at least `n` deliveries.
fn until_delivered(records: &Mutex<Vec<Record>>, n: usize, what: &str) {
    let deadline = Instant::now() + LONG;
    while records.lock().unwrap().len() < n {
        assert!(
            Instant::now() < deadline,
            "{what}: fewer than {n} delivered"
        );
        thread::sleep(Duration::from_millis(1));
    }
}

/// The schedule that made a restarted listener deliver a run of messages twice, unmarked: a
/// proxy holds back the acknowledgements of the first listener's last few thousand
/// deliveries, the first listener is killed and restarted, and the held-back
/// acknowledgements reach the writer on its old connection just after it has said hello on
/// the new one (whose welcome the proxy delays). Then the proxy cuts the connection once
/// more. The writer must number its re-sent messages from where the welcome said, whatever
/// arrived on the old connection meanwhile: every delivery's number is its message's, no
/// process delivers a message twice, every repeat across processes is marked.
#[test]
fn stale_acknowledgements_after_a_restart_misnumber_nothing() {
    if std::env::var_os(CHILD).is_some() {
        return;
    }
    const N: u64 = 200_000;
    const WINDOW: u64 = 4_000;
    let port = free_port();
    let first = Arc::new(Mutex::new(Vec::new()));
    let second = Arc::new(Mutex::new(Vec::new()));
    let mut one = child("child_listener", &port.to_string());
    let reader_one = records(&mut one, first.clone());
    let proxy = Proxy::start(([127, 0, 0, 1], port).into());
    let (config, dead) = surviving_writer();
    let config = config
        .with_ack_window(usize::MAX, WINDOW)
        .with_write_timeout(Some(Duration::from_millis(300)));
    let writer: Writer = Writer::dial(proxy.addr, config).unwrap();
    let streaming = thread::spawn(move || {
        for i in 0..N {
            writer.write(&message(i)).unwrap();
        }
        writer.close()
    });
    until_delivered(&first, 30_000, "the first listener");
    // The acknowledgements stop reaching the writer; the listener goes on delivering what is
    // in flight (up to the window) and acknowledging it into the proxy.
    proxy.stall_back();
    let stalled_at = first.lock().unwrap().len();
    thread::sleep(Duration::from_millis(200));
    proxy.release_stalled_after_next_hello(46, Duration::from_millis(100));
    drop(one); // SIGKILL
    reader_one.join().unwrap();
    let mut two = child("child_listener", &port.to_string());
    let reader_two = records(&mut two, second.clone());
    until_delivered(&second, 20_000, "the second listener");
    proxy.cut_all();
    let stats = streaming.join().unwrap();
    drop(two);
    reader_two.join().unwrap();

    let first = first.lock().unwrap();
    let second = second.lock().unwrap();
    let dead = dead.lock().unwrap();
    eprintln!(
        "first listener {} deliveries ({} after the stall), second {}, {} dead-lettered, writer {stats:?}",
        first.len(),
        first.len() - stalled_at,
        second.len(),
        dead.len()
    );
    assert!(dead.is_empty(), "{} dead-lettered", dead.len());
    for (who, records) in [("first", &*first), ("second", &*second)] {
        // One session, nothing given up: message i is number i + 1.
        if let Some(r) = records.iter().find(|r| r.1 != r.0 + 1) {
            panic!(
                "the {who} listener numbered message {} as {} (may_repeat {})",
                r.0, r.1, r.2
            );
        }
        let mut once = std::collections::HashSet::new();
        if let Some(r) = records.iter().find(|r| !once.insert(r.0)) {
            panic!(
                "the {who} listener delivered message {} twice (may_repeat {})",
                r.0, r.2
            );
        }
    }
    let firsts: std::collections::HashSet<u64> = first.iter().map(|r| r.0).collect();
    for r in second.iter().filter(|r| firsts.contains(&r.0)) {
        assert!(r.2, "message {} delivered again without may_repeat", r.0);
    }
    let seen: std::collections::HashSet<u64> = firsts
        .iter()
        .copied()
        .chain(second.iter().map(|r| r.0))
        .collect();
    assert_eq!(seen.len() as u64, N, "messages missing");
    assert_eq!((stats.acked, stats.dead_lettered), (N, 0), "{stats:?}");
}

#[test]
fn a_writer_killed_mid_stream_leaves_a_prefix_without_gaps() {
    if std::env::var_os(CHILD).is_some() {
        return;
    }
    type Seen = Arc<Mutex<HashMap<SessionId, Vec<(u64, u64)>>>>;
    let seen: Seen = Arc::default();
    let s = seen.clone();
    let server =
        Listener::<BigEndian<4>>::bind("127.0.0.1:0", ListenerConfig::new().with_acks(true))
            .unwrap()
            .spawn_with_reply(move |m, conn| {
                let d = conn.delivery().unwrap();
                s.lock()
                    .unwrap()
                    .entry(d.session)
                    .or_default()
                    .push((d.seq, index(m)));
                Ok(())
            })
            .unwrap();
    let port = server.local_addr().port().to_string();
    let writer = child("child_writer", &port);
    let deadline = Instant::now() + LONG;
    while seen.lock().unwrap().values().map(Vec::len).sum::<usize>() < 100_000 {
        assert!(Instant::now() < deadline, "the writer sent too little");
        thread::sleep(Duration::from_millis(1));
    }
    drop(writer); // SIGKILL
    // A new writer, a new session.
    let next: Writer =
        Writer::dial(server.local_addr(), WriterConfig::new().with_acks(true)).unwrap();
    for i in 0..10_000 {
        next.write(&message(i)).unwrap();
    }
    let stats = next.close();
    assert_eq!(stats.acked, 10_000);
    server.shutdown();
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2, "two sessions");
    for (session, deliveries) in seen.iter() {
        // Numbers 1, 2, 3, ... with no gap, each message the one sent with that number.
        for (k, &(seq, i)) in deliveries.iter().enumerate() {
            assert_eq!((seq, i), (k as u64 + 1, k as u64), "session {session}");
        }
    }
    let killed = seen.values().map(Vec::len).max().unwrap();
    eprintln!("the killed writer's session: a prefix of {killed} messages");
}

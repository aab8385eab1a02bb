//! The acknowledged mode on an emulated microcontroller against a desktop server that dies:
//! QEMU's mps2-an385 (Cortex-M3) runs `examples/firmware/src/acked.rs` with its LAN9118 on a
//! TAP device inside a network namespace this test creates (a real link, so the server can
//! go away and come back, which QEMU's one-shot `guestfwd` cannot carry). The firmware streams
//! 20,000 numbered messages through transport-smoltcp's acknowledged `Writer` to a
//! transport-std acknowledged `Listener` in a child process; the test SIGKILLs that process
//! mid-stream and starts another on the same port. Every message must be delivered, each
//! numbered as the firmware numbered it, no process delivering one twice, every repeat
//! across the restart marked `may_repeat`; the firmware must exit with success (it does once
//! every message is acknowledged).
//!
//! Needs root (the namespace and the TAP device), `qemu-system-arm` and the
//! `thumbv7m-none-eabi` target; without them the test says why it skips, and with
//! `BUFFSTREAMS_NO_SKIP` set (CI) it fails instead.

mod common {
    pub mod firmware;
}

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use buffstreams_test_support::{Netns, root_or_skip};
use buffstreams_transport_std::{BigEndian, Listener, ListenerConfig};
use common::firmware::{build, firmware_dir};

const CHILD: &str = "BUFFSTREAMS_FIRMWARE_LISTENER";
const COUNT: u64 = 20_000;
const LONG: Duration = Duration::from_secs(150);

/// A process killed (SIGKILL) when dropped: a failing test leaves none behind.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One delivery as a child listener reports it: `(index, seq, may_repeat)`.
type Record = (u64, u64, bool);

/// In the child, inside the namespace: an acknowledged listener on 192.168.69.100:5035 that
/// prints every delivery before its callback returns (so an acknowledged message is always
/// printed).
#[test]
#[ignore = "the server process of the firmware crash test: runs only when it starts it"]
fn child_listener() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let listener = Listener::<BigEndian<4>>::bind(
        "192.168.69.100:5035",
        ListenerConfig::new().with_acks(true),
    )
    .unwrap();
    println!("ready");
    listener.run_with_reply(|m, conn| {
        let d = conn.delivery().unwrap();
        let index = u64::from_be_bytes(m[..8].try_into()?);
        writeln!(std::io::stdout(), "D {index} {} {}", d.seq, d.may_repeat)?;
        Ok(())
    });
}

/// A child listener in `ns`, and the thread collecting its records; returns once it is ready.
fn listener(ns: &Netns, into: Arc<Mutex<Vec<Record>>>) -> (Killed, thread::JoinHandle<()>) {
    let mut child = Killed(
        ns.exec(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "child_listener",
                "--include-ignored",
                "--nocapture",
            ])
            .args(["--test-threads", "1"])
            .env(CHILD, "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the child listener"),
    );
    let out = BufReader::new(child.0.stdout.take().unwrap());
    let (tx, rx) = mpsc::channel();
    let reader = thread::spawn(move || {
        for line in out.lines() {
            let Ok(line) = line else { break };
            // The test harness may have started the line (`test child_listener ... `).
            if line.ends_with("ready") {
                let _ = tx.send(());
            }
            if let ["D", i, seq, repeat] = line.split(' ').collect::<Vec<_>>()[..] {
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
    (child, reader)
}

/// Firmware `bin` under QEMU with its LAN9118 on the namespace's TAP device (140 s at most),
/// and a thread collecting what it prints.
fn firmware_on_tap(ns: &Netns, bin: &str) -> (Killed, thread::JoinHandle<String>) {
    let elf = firmware_dir()
        .join("target/thumbv7m-none-eabi/release")
        .join(bin);
    let mut qemu = Killed(
        ns.exec(firmware_dir().join("qemu.sh"))
            .arg(&elf)
            .env("FIRMWARE_TAP", "tap0")
            .env("FIRMWARE_TIMEOUT", "140")
            .stdout(Stdio::piped())
            .spawn()
            .expect("run qemu.sh"),
    );
    let mut out = qemu.0.stdout.take().expect("piped");
    let printed = thread::spawn(move || {
        let mut text = String::new();
        let _ = out.read_to_string(&mut text);
        text
    });
    (qemu, printed)
}

/// Within one process, nothing twice; every message numbered as the firmware numbered it.
fn once_each(who: &str, records: &[Record]) -> HashSet<u64> {
    let mut seen = HashSet::new();
    for &(i, seq, repeat) in records {
        assert_eq!(
            seq,
            i + 1,
            "the {who} listener numbered message {i} as {seq}"
        );
        assert!(
            seen.insert(i),
            "the {who} listener delivered message {i} twice (may_repeat {repeat})"
        );
    }
    seen
}

#[test]
fn acked_firmware_loses_nothing_when_its_listener_is_killed() {
    if std::env::var_os(CHILD).is_some() || !build("acked") || !root_or_skip() {
        return;
    }
    let ns = Netns::create("fw-acked");
    let first = Arc::new(Mutex::new(Vec::new()));
    let second = Arc::new(Mutex::new(Vec::new()));
    let (one, reader_one) = listener(&ns, first.clone());

    let (mut qemu, firmware) = firmware_on_tap(&ns, "acked");

    // Mid-stream: a quarter delivered, the server process dies, another takes the port.
    let started = Instant::now();
    while (first.lock().unwrap().len() as u64) < COUNT / 4 {
        assert!(
            started.elapsed() < LONG,
            "the first listener got only {} messages",
            first.lock().unwrap().len()
        );
        assert!(
            !firmware.is_finished(),
            "the firmware ended early:\n{}",
            firmware.join().unwrap()
        );
        thread::sleep(Duration::from_millis(5));
    }
    drop(one); // SIGKILL
    reader_one.join().unwrap();
    let (two, reader_two) = listener(&ns, second.clone());

    let status = loop {
        if let Some(status) = qemu.0.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < LONG, "QEMU did not end");
        thread::sleep(Duration::from_millis(20));
    };
    let out = firmware.join().unwrap();
    for line in out.lines() {
        println!("  | {line}");
    }
    // Everything acknowledged was printed before its acknowledgement.
    drop(two);
    reader_two.join().unwrap();

    assert!(status.success(), "the firmware failed: {status:?}");
    assert!(
        out.contains(&format!("{COUNT} messages acknowledged")),
        "the firmware did not report every message acknowledged"
    );
    let (first, second) = (first.lock().unwrap(), second.lock().unwrap());
    assert!(
        !first.is_empty() && (first.len() as u64) < COUNT,
        "the kill did not come mid-stream: the first listener delivered {}",
        first.len()
    );
    let (a, b) = (once_each("first", &first), once_each("second", &second));
    assert!(
        first.iter().all(|r| !r.2),
        "the first listener marked a repeat"
    );
    let mut repeats = 0;
    for &(i, _, may_repeat) in second.iter().filter(|r| a.contains(&r.0)) {
        assert!(may_repeat, "message {i} delivered again without may_repeat");
        repeats += 1;
    }
    let missing: Vec<u64> = (0..COUNT)
        .filter(|i| !a.contains(i) && !b.contains(i))
        .collect();
    assert!(
        missing.is_empty(),
        "{} messages missing, first {:?}",
        missing.len(),
        missing.first()
    );
    let figures = format!(
        "acked firmware: listener killed after {} of {COUNT}; the second delivered {}, \
         {repeats} of them again and marked may_repeat; nothing missing\n",
        first.len(),
        second.len()
    );
    print!("{figures}");
    let _ = std::fs::write(
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("acked-firmware-figures.txt"),
        out.lines()
            .filter(|l| l.contains("messages/s") || l.contains("RAM"))
            .map(|l| format!("{l}\n"))
            .collect::<String>()
            + &figures,
    );
}

/// The other direction over the same kind of link: the `client` program (a transport-std
/// acknowledged `Writer`) dials the firmware's acknowledged listener and sends 20,000
/// numbered messages; the firmware resets every connection once, mid-stream. The firmware
/// checks each message's number and order (no repeat: it remembers the session) and exits
/// with success; the client must report all of them acknowledged, none dead-lettered.
#[test]
fn a_desktop_writer_streams_into_the_firmwares_acked_listener() {
    if std::env::var_os(CHILD).is_some() || !build("acked_listener") || !root_or_skip() {
        return;
    }
    let ns = Netns::create("fw-listener");
    let (mut qemu, firmware) = firmware_on_tap(&ns, "acked_listener");
    // The firmware listens once its poll loop runs: the client's retry policy covers that.
    let client = ns
        .exec(env!("CARGO_BIN_EXE_client"))
        .args(["--addr", "192.168.69.1:5036", "--acks", "--payload", "64"])
        .args(["--count", &COUNT.to_string()])
        .output()
        .expect("run the client");
    let said = String::from_utf8_lossy(&client.stdout);
    let status = qemu.0.wait().expect("wait for QEMU");
    let fw = firmware.join().unwrap();
    for line in said.lines().chain(fw.lines()) {
        println!("  | {line}");
    }
    assert!(
        client.status.success(),
        "client failed: {said}{}",
        String::from_utf8_lossy(&client.stderr)
    );
    assert!(
        said.contains("0 dead-lettered") && said.contains(&format!("{COUNT} acknowledged")),
        "{said}"
    );
    assert!(status.success(), "the firmware failed: {status:?}");
    assert!(
        fw.contains(&format!("{COUNT} messages checked")),
        "the firmware did not check every message"
    );
}

//! The firmware example on an emulated microcontroller, against a desktop server: QEMU's
//! mps2-an385 (Cortex-M3) runs `examples/firmware` (LAN9118 driver, smoltcp, and
//! buffstreams-transport-smoltcp's `Writer`), reaches only a transport-std `Listener` on
//! 127.0.0.1 through QEMU's isolated user networking, streams 10,000 messages and checks every
//! echoed reply. The firmware's exit status (semihosting) and the listener's counters must
//! both say every message made it.
//!
//! Needs `qemu-system-arm` and the `thumbv7m-none-eabi` target (CI installs both); without
//! them the test says why it skips, and with `BUFFSTREAMS_NO_SKIP` set (CI) it fails instead.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use buffstreams_transport_std::{Listener, ListenerConfig};

const COUNT: u64 = 10_000;

fn firmware_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("firmware")
}

/// Skips (with the reason) unless CI demands the test, then fails with it.
fn skip(reason: &str) {
    assert!(
        std::env::var_os("BUFFSTREAMS_NO_SKIP").is_none(),
        "BUFFSTREAMS_NO_SKIP is set: {reason}"
    );
    eprintln!("skipped: {reason}");
}

/// `cargo` in the firmware's own workspace, without the variables of the cargo running us.
fn cargo(args: &[&str]) -> Output {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        if key.starts_with("CARGO_") && key != "CARGO_HOME" || key == "RUSTFLAGS" {
            cmd.env_remove(key);
        }
    }
    cmd.args(args)
        .current_dir(firmware_dir())
        .output()
        .expect("run cargo")
}

#[test]
fn firmware_streams_to_a_transport_std_listener_and_checks_every_reply() {
    if Command::new("qemu-system-arm")
        .arg("--version")
        .output()
        .is_err()
    {
        return skip("qemu-system-arm is not installed");
    }
    let build = cargo(&["build", "--release", "--locked", "--bin", "firmware"]);
    if !build.status.success() {
        let err = String::from_utf8_lossy(&build.stderr);
        if err.contains("thumbv7m-none-eabi") && err.contains("target may not be installed") {
            return skip("the thumbv7m-none-eabi target is not installed");
        }
        panic!("firmware build failed:\n{err}");
    }

    // The desktop side: a transport-std listener that echoes every message.
    let config = ListenerConfig::new().with_max_frame_len(1000);
    let listener: Listener = Listener::bind("127.0.0.1:0", config).unwrap();
    let port = listener.local_addr().port().to_string();
    let server = listener
        .spawn_with_reply(|msg, conn| {
            conn.reply(msg)?;
            Ok(())
        })
        .expect("spawn the listener");

    let elf = firmware_dir().join("target/thumbv7m-none-eabi/release/firmware");
    let child = Command::new(firmware_dir().join("qemu.sh"))
        .arg(&elf)
        .env("FIRMWARE_HOST_PORT", &port)
        .env("FIRMWARE_TIMEOUT", "120")
        .output();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || tx.send(child));
    let out = rx
        .recv_timeout(Duration::from_secs(150))
        .expect("qemu did not end (its own timeout is 120 s)")
        .expect("run qemu.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    for line in stdout.lines() {
        println!("  | {line}");
    }
    // The figures, for CI's summary (cargo captures a passing test's output).
    let figures: String = stdout
        .lines()
        .filter(|l| l.contains("messages/s") || l.contains("RAM"))
        .map(|l| format!("{l}\n"))
        .collect();
    let _ = std::fs::write(
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("firmware-figures.txt"),
        figures,
    );
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "firmware failed: {:?}", out.status);
    assert!(
        stdout.contains(&format!("{COUNT} messages echoed and checked")),
        "the firmware did not report every reply checked"
    );
    let stats = server.shutdown();
    assert_eq!(
        stats.messages_in, COUNT,
        "messages the desktop listener received"
    );
    assert_eq!(stats.messages_out, COUNT, "replies it sent");
    assert_eq!(stats.protocol_errors, 0);
}

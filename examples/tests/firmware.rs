//! The firmware example on an emulated microcontroller, against a desktop server: QEMU's
//! mps2-an385 (Cortex-M3) runs `examples/firmware` (LAN9118 driver, smoltcp, and
//! buffstreams-transport-smoltcp's `Writer`), reaches only a transport-std `Listener` on
//! 127.0.0.1 through QEMU's isolated user networking, streams 10,000 messages and checks every
//! echoed reply. The firmware's exit status (semihosting) and the listener's counters must
//! both say every message made it.
//!
//!
//! The embassy twin (`examples/firmware/src/embassy.rs`: embassy's executor and embassy-net on
//! the same board and driver, the framing crate's async writer) streams to a transport-std
//! `Listener` that checks every message byte for byte.
//!
//! Needs `qemu-system-arm` and the `thumbv7m-none-eabi` target (CI installs both); without
//! them the test says why it skips, and with `BUFFSTREAMS_NO_SKIP` set (CI) it fails instead.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use buffstreams_transport_std::{Listener, ListenerConfig};
use common::firmware::{build, firmware_dir};

mod common {
    pub mod firmware;
}

const COUNT: u64 = 10_000;

/// Runs firmware `bin` on QEMU with its network forwarded to 127.0.0.1:`port`; its output.
fn run(bin: &str, port: u16) -> Output {
    let elf = firmware_dir()
        .join("target/thumbv7m-none-eabi/release")
        .join(bin);
    let child = Command::new(firmware_dir().join("qemu.sh"))
        .arg(&elf)
        .env("FIRMWARE_HOST_PORT", port.to_string())
        .env("FIRMWARE_TIMEOUT", "120")
        .output();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || tx.send(child));
    let out = rx
        .recv_timeout(Duration::from_secs(150))
        .expect("qemu did not end (its own timeout is 120 s)")
        .expect("run qemu.sh");
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        println!("  | {line}");
    }
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    out
}

#[test]
fn firmware_streams_to_a_transport_std_listener_and_checks_every_reply() {
    if !build("firmware") {
        return;
    }

    // The desktop side: a transport-std listener that echoes every message.
    let config = ListenerConfig::new().with_max_frame_len(1000);
    let listener: Listener = Listener::bind("127.0.0.1:0", config).unwrap();
    let port = listener.local_addr().port();
    let server = listener
        .spawn_with_reply(|msg, conn| {
            conn.reply(msg)?;
            Ok(())
        })
        .expect("spawn the listener");

    let out = run("firmware", port);
    let stdout = String::from_utf8_lossy(&out.stdout);
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

#[test]
fn embassy_firmware_streams_to_a_transport_std_listener_that_checks_every_message() {
    use buffstreams_embassy_example::{CONFIG, Expected};
    use std::sync::{Arc, Mutex};

    if !build("embassy") {
        return;
    }
    // The desktop side checks each message against what the firmware generates.
    let seen = Arc::new(Mutex::new(Expected::default()));
    let listener: Listener =
        Listener::bind("127.0.0.1:0", ListenerConfig::new().with_framing(CONFIG)).unwrap();
    let port = listener.local_addr().port();
    let server = {
        let seen = seen.clone();
        listener
            .spawn(move |m: &[u8]| {
                seen.lock().unwrap().check(m);
                Ok(())
            })
            .expect("spawn the listener")
    };
    let out = run("embassy", port);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let figures: String = stdout
        .lines()
        .filter(|l| l.contains("messages/s"))
        .map(|l| format!("{l}\n"))
        .collect();
    let _ = std::fs::write(
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("embassy-firmware-figures.txt"),
        figures,
    );
    assert!(
        out.status.success(),
        "embassy firmware failed: {:?}",
        out.status
    );
    assert!(
        stdout.contains("2000 messages sent and acknowledged"),
        "{stdout}"
    );
    let stats = server.shutdown();
    let (arrived, first_bad) = {
        let seen = seen.lock().unwrap();
        (seen.count(), seen.first_wrong())
    };
    assert_eq!(first_bad, None, "first message that differs");
    assert_eq!(
        (arrived, stats.messages_in, stats.protocol_errors),
        (2000, 2000, 0)
    );
}

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
//! The TLS image (`examples/firmware/src/embassy_tls.rs`: the embassy twin over mutual TLS
//! 1.3 with embedded-tls) streams to a transport-std `Listener` with `with_tls`, which checks
//! every message and the device's certificate; the certificates are made here and compiled
//! into the image. Its flash and RAM are measured against the plain embassy image.
//!
//! Needs `qemu-system-arm` and the `thumbv7m-none-eabi` target (CI installs both); without
//! them the test says why it skips, and with `BUFFSTREAMS_NO_SKIP` set (CI) it fails instead.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use buffstreams_transport_std::{Listener, ListenerConfig};
use common::firmware::{build, build_with, firmware_dir};

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
    // Shut down first: it returns once every callback has returned.
    let stats = server.shutdown();
    let arrived = streamed(&out, "2000 messages sent and acknowledged", &seen);
    assert_eq!(
        (arrived, stats.messages_in, stats.protocol_errors),
        (2000, 2000, 0)
    );
}

/// An embassy image's run: it exited with success and said `line`, and every message the
/// listener checked was right; how many it checked (call it after the listener's shutdown,
/// which waits for its callbacks).
fn streamed(
    out: &Output,
    line: &str,
    seen: &std::sync::Mutex<buffstreams_embassy_example::Expected>,
) -> u32 {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the firmware failed: {:?}",
        out.status
    );
    assert!(stdout.contains(line), "{stdout}");
    let seen = seen.lock().unwrap();
    assert_eq!(seen.first_wrong(), None, "first message that differs");
    seen.count()
}

/// `.text + .rodata` and `.data + .bss` of firmware `bin`, from `llvm-size` (rustup's
/// `llvm-tools`), if it is installed.
fn flash_and_ram(bin: &str) -> Option<(u64, u64)> {
    let sysroot = Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .ok()?;
    let sysroot = String::from_utf8(sysroot.stdout).ok()?;
    let tools = std::fs::read_dir(PathBuf::from(sysroot.trim()).join("lib/rustlib"))
        .ok()?
        .flatten()
        .map(|e| e.path().join("bin/llvm-size"))
        .find(|p| p.exists())?;
    let elf = firmware_dir()
        .join("target/thumbv7m-none-eabi/release")
        .join(bin);
    let out = Command::new(tools).arg("-A").arg(elf).output().ok()?;
    let (mut flash, mut ram) = (0, 0);
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let mut fields = line.split_whitespace();
        let (Some(name), Some(size)) = (fields.next(), fields.next()) else {
            continue;
        };
        let Ok(size) = size.parse::<u64>() else {
            continue;
        };
        match name {
            ".text" | ".rodata" => flash += size,
            ".data" | ".bss" | ".uninit" => ram += size,
            _ => {}
        }
    }
    Some((flash, ram))
}

/// The private scalar of a P-256 key in PKCS#8 DER (as rcgen and ring write it): the 32
/// bytes after the ECPrivateKey's version and OCTET STRING header.
fn p256_scalar(pkcs8: &[u8]) -> [u8; 32] {
    let at = pkcs8
        .windows(5)
        .position(|w| w == [0x02, 0x01, 0x01, 0x04, 0x20])
        .expect("an ECPrivateKey in the PKCS#8 document")
        + 5;
    pkcs8[at..at + 32].try_into().unwrap()
}

#[test]
fn tls_firmware_streams_over_mutual_tls_to_a_transport_std_listener() {
    use buffstreams_embassy_example::{CONFIG, Expected};
    use buffstreams_test_support::pki::{Ca, Leaf};
    use std::sync::{Arc, Mutex};

    // The certificates of this run: the CA and the device's go into the image.
    let ca = Ca::new("firmware test CA");
    let server = ca.leaf("listener", &["localhost"], Leaf::Server);
    let device = ca.leaf("device-7", &[], Leaf::Client);
    let pki = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("firmware-pki");
    std::fs::create_dir_all(&pki).unwrap();
    std::fs::write(pki.join("ca.der"), &ca.cert).unwrap();
    std::fs::write(pki.join("device.der"), &device.chain[0]).unwrap();
    std::fs::write(
        pki.join("device.key"),
        p256_scalar(device.key.secret_pkcs8_der()),
    )
    .unwrap();
    if !build_with(
        "embassy_tls",
        &["tls"],
        &[("BUFFSTREAMS_FIRMWARE_PKI", pki.as_path())],
    ) {
        return;
    }
    // The desktop side: mutual TLS, every message checked, and who sent it.
    let seen = Arc::new(Mutex::new(Expected::default()));
    let strangers = Arc::new(Mutex::new(0u32));
    let config = ListenerConfig::new()
        .with_framing(CONFIG)
        .with_tls(Ca::server(&server, Some(&ca)));
    let listener: Listener = Listener::bind("127.0.0.1:0", config).unwrap();
    let port = listener.local_addr().port();
    let server = {
        let (seen, strangers) = (seen.clone(), strangers.clone());
        let device = device.chain[0].clone();
        listener
            .spawn_with_reply(move |m, conn| {
                if conn.peer_certificates().and_then(|c| c.first()) != Some(&device) {
                    *strangers.lock().unwrap() += 1;
                }
                seen.lock().unwrap().check(m);
                Ok(())
            })
            .expect("spawn the listener")
    };
    let out = run("embassy_tls", port);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stats = server.shutdown();
    let arrived = streamed(&out, "2000 messages sent over TLS and acknowledged", &seen);
    assert_eq!(
        *strangers.lock().unwrap(),
        0,
        "messages without the device's certificate"
    );
    assert_eq!(
        (
            arrived,
            stats.messages_in,
            stats.tls_errors,
            stats.protocol_errors
        ),
        (2000, 2000, 0, 0)
    );
    // The device really verifies: a listener whose certificate comes from another CA (same
    // name, same everything else) gets nothing, and the firmware fails.
    let impostor = Ca::new("another CA");
    let wrong = impostor.leaf("listener", &["localhost"], Leaf::Server);
    let listener: Listener = Listener::bind(
        "127.0.0.1:0",
        ListenerConfig::new()
            .with_framing(CONFIG)
            .with_tls(Ca::server(&wrong, Some(&ca))),
    )
    .unwrap();
    let port = listener.local_addr().port();
    let impostor_server = listener.spawn(|_: &[u8]| Ok(())).expect("spawn");
    let refused = run("embassy_tls", port);
    let said = String::from_utf8_lossy(&refused.stdout);
    assert!(
        !refused.status.success(),
        "the firmware accepted an impostor: {said}"
    );
    assert!(said.contains("tls firmware: Tls("), "{said}");
    let stats = impostor_server.shutdown();
    assert_eq!((stats.messages_in, stats.connections_total), (0, 1));
    // The figures, for CI's summary: the run, and what TLS adds to the plain embassy image.
    let mut figures: String = stdout
        .lines()
        .filter(|l| l.contains("messages/s") || l.contains("handshake"))
        .map(|l| format!("{l}\n"))
        .collect();
    if build("embassy")
        && let (Some((plain_flash, plain_ram)), Some((tls_flash, tls_ram))) =
            (flash_and_ram("embassy"), flash_and_ram("embassy_tls"))
    {
        figures += &format!(
            "tls firmware: flash (.text + .rodata) {tls_flash} B against {plain_flash} B for the plain embassy image (+{} B); static RAM (.data + .bss) {tls_ram} B against {plain_ram} B (+{} B)\n",
            tls_flash.saturating_sub(plain_flash),
            tls_ram.saturating_sub(plain_ram),
        );
    }
    print!("{figures}");
    let _ = std::fs::write(
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("tls-firmware-figures.txt"),
        figures,
    );
}

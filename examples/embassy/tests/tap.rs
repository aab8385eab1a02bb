//! embassy-net over a TAP device against transport-std, both directions, inside a network
//! namespace that this test creates and always deletes (nothing is added to the root
//! namespace, nothing can leave the machine). Needs root; without it the test says why it
//! skips, and with `BUFFSTREAMS_NO_SKIP` set (CI) it fails instead.

use std::process::Command;

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find(|l| l.starts_with("Uid:"))
            .and_then(|l| l.split_whitespace().nth(2))
            == Some("0")
    })
}

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("run ip (iproute2)");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A network namespace with `tap0` up, kernel side 192.168.69.100/24; deleted on drop.
struct Netns(String);

impl Netns {
    fn create() -> Self {
        let name = format!("bsrs-embassy-{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        ip(&["netns", "add", &name]);
        let ns = Self(name);
        for args in [
            &["link", "set", "lo", "up"][..],
            &["tuntap", "add", "dev", "tap0", "mode", "tap"],
            &["addr", "add", "192.168.69.100/24", "dev", "tap0"],
            &["link", "set", "tap0", "up"],
        ] {
            let mut all = vec!["-n", ns.0.as_str()];
            all.extend_from_slice(args);
            ip(&all);
        }
        ns
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

#[test]
fn embassy_net_and_transport_std_exchange_thousands_of_frames_each_way() {
    if !is_root() {
        assert!(
            std::env::var_os("BUFFSTREAMS_NO_SKIP").is_none(),
            "BUFFSTREAMS_NO_SKIP is set but this test does not run as root"
        );
        eprintln!("skipped: creating a network namespace and a TAP device needs root (CI runs it)");
        return;
    }
    let ns = Netns::create();
    let out = Command::new("ip")
        .args(["netns", "exec", &ns.0, env!("CARGO_BIN_EXE_embassy_tap")])
        .args(["--count", "3000"])
        .output()
        .expect("run embassy_tap in the namespace");
    let stdout = String::from_utf8_lossy(&out.stdout);
    for line in stdout.lines() {
        println!("  | {line}");
    }
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "embassy_tap failed: {:?}", out.status);
    assert!(
        stdout.contains("3000 messages each way, every byte checked"),
        "{stdout}"
    );
}

//! A network namespace with a TAP device, for the tests that put smoltcp, embassy-net or the
//! emulated board on a link to the kernel's TCP: `tap0` up, kernel side 192.168.69.100/24.
//! Nothing is added to the root namespace and nothing can leave the machine; the namespace
//! is deleted on drop whatever happens.

use std::process::Command;

#[cfg(feature = "tls")]
pub mod pki;

/// Whether this process runs as root (which a namespace and a TAP device need).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find(|l| l.starts_with("Uid:"))
            .and_then(|l| l.split_whitespace().nth(2))
            == Some("0")
    })
}

/// `false` (after saying why it skips) when not root; fails instead under
/// `BUFFSTREAMS_NO_SKIP` (CI).
pub fn root_or_skip() -> bool {
    if is_root() {
        return true;
    }
    assert!(
        std::env::var_os("BUFFSTREAMS_NO_SKIP").is_none(),
        "BUFFSTREAMS_NO_SKIP is set but this test does not run as root"
    );
    eprintln!("skipped: creating a network namespace and a TAP device needs root (CI runs it)");
    false
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

/// The namespace; [`exec`](Self::exec) runs a program inside it.
#[derive(Debug)]
pub struct Netns(pub String);

impl Netns {
    /// Creates `bsrs-<tag>-<pid>` with `lo` and `tap0` up (an old one of that name is deleted
    /// first). Panics when `ip` fails: the test cannot run.
    pub fn create(tag: &str) -> Self {
        let name = format!("bsrs-{tag}-{}", std::process::id());
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

    /// `program` inside the namespace (`ip netns exec` execs it: the child is the program).
    pub fn exec(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.0]).arg(program);
        cmd
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

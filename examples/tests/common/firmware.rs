//! Building the firmware (examples/firmware, its own workspace) for the tests that run it on
//! QEMU's mps2-an385.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output};

/// `examples/firmware`.
pub fn firmware_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("firmware")
}

/// Skips (with the reason) unless CI demands the test, then fails with it.
pub fn skip(reason: &str) {
    assert!(
        std::env::var_os("BUFFSTREAMS_NO_SKIP").is_none(),
        "BUFFSTREAMS_NO_SKIP is set: {reason}"
    );
    eprintln!("skipped: {reason}");
}

/// `cargo` in the firmware's own workspace, without the variables of the cargo running us.
pub fn cargo(args: &[&str]) -> Output {
    cargo_env(args, &[])
}

/// [`cargo`] with `env` set.
pub fn cargo_env(args: &[&str], env: &[(&str, &std::path::Path)]) -> Output {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        if key.starts_with("CARGO_") && key != "CARGO_HOME" || key == "RUSTFLAGS" {
            cmd.env_remove(key);
        }
    }
    for (key, value) in env {
        cmd.env(key, value);
    }
    cmd.args(args)
        .current_dir(firmware_dir())
        .output()
        .expect("run cargo")
}

/// Builds firmware `bin`; `false` (after saying why) when this machine cannot run it.
pub fn build(bin: &str) -> bool {
    build_with(bin, &[], &[])
}

/// [`build`] with cargo `features` on and `env` set.
pub fn build_with(bin: &str, features: &[&str], env: &[(&str, &std::path::Path)]) -> bool {
    if Command::new("qemu-system-arm")
        .arg("--version")
        .output()
        .is_err()
    {
        skip("qemu-system-arm is not installed");
        return false;
    }
    let features = features.join(",");
    let mut args = vec!["build", "--release", "--locked", "--bin", bin];
    if !features.is_empty() {
        args.extend(["--features", &features]);
    }
    let build = cargo_env(&args, env);
    if !build.status.success() {
        let err = String::from_utf8_lossy(&build.stderr);
        if err.contains("thumbv7m-none-eabi") && err.contains("target may not be installed") {
            skip("the thumbv7m-none-eabi target is not installed");
            return false;
        }
        panic!("{bin} build failed:\n{err}");
    }
    true
}

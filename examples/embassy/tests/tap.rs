//! embassy-net over a TAP device against transport-std, both directions, inside a network
//! namespace that this test creates and always deletes (nothing is added to the root
//! namespace, nothing can leave the machine). Needs root; without it the test says why it
//! skips, and with `BUFFSTREAMS_NO_SKIP` set (CI) it fails instead.

use buffstreams_test_support::{Netns, root_or_skip};

#[test]
fn embassy_net_and_transport_std_exchange_thousands_of_frames_each_way() {
    if !root_or_skip() {
        return;
    }
    let ns = Netns::create("embassy");
    let out = ns
        .exec(env!("CARGO_BIN_EXE_embassy_tap"))
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

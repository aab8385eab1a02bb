//! The same bytes cut at fuzzer-chosen points give exactly the frames, events and error of
//! one feed.
#![no_main]

use buffstreams_framing::harness::run;
use buffstreams_framing::{Config, LengthPrefix, Oversize, with_format};
use libfuzzer_sys::fuzz_target;

fn check<H: LengthPrefix>(config: Config, stream: &[u8], cuts: &[usize]) {
    let whole = run::<H>(config, stream, &[]);
    let chunked = run::<H>(config, stream, cuts);
    assert_eq!(whole, chunked, "cuts {cuts:?}");
}

fuzz_target!(|data: &[u8]| {
    let [sel, knobs, ncuts, rest @ ..] = data else {
        return;
    };
    let ncuts = usize::from(*ncuts % 16).min(rest.len());
    let (cut_bytes, stream) = rest.split_at(ncuts);
    let mut cuts = Vec::with_capacity(ncuts);
    let mut at = 0usize;
    for &c in cut_bytes {
        at += usize::from(c);
        cuts.push(at.min(stream.len()));
    }
    let policy = if knobs & 1 == 0 {
        Oversize::Reject
    } else {
        Oversize::Skip
    };
    let max = [0, 3, 64, 300, 4096][usize::from(knobs >> 1) % 5];
    let config = Config::new().with_max_frame_len(max).with_oversize(policy);
    with_format!(usize::from(*sel), check, config, stream, &cuts);
});

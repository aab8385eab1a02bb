//! The tokio-util `Codec` on any bytes, appended to its buffer in fuzzer-chosen pieces, under
//! any maximum, oversize policy and length convention: exactly the frames, skips and error of
//! the crate's `Decoder` fed the whole stream, and never a panic, a loop or a frame over the
//! maximum.
#![no_main]

use buffstreams_framing::harness::codec::codec_agrees;
use buffstreams_framing::{Config, Oversize, with_format};
use libfuzzer_sys::fuzz_target;

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
    let max = [0, 3, 64, 300, 4096][usize::from((knobs >> 1) & 7) % 5];
    let config = Config::new()
        .with_max_frame_len(max)
        .with_oversize(policy)
        .with_max_skip_len(1 << 16)
        .with_length_includes_header(knobs & 0x80 != 0);
    with_format!(usize::from(*sel), codec_agrees, config, stream, &cuts);
});

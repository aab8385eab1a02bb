//! Arbitrary bytes through the decoder, for every header format (first byte) and both
//! oversize policies and a few maxima (second byte). The harness asserts on every call:
//! consumed <= input, progress, every frame <= the max, and a failed decoder stays failed.
#![no_main]

use buffstreams_framing::harness::{Out, run};
use buffstreams_framing::{Config, DecodeError, LengthPrefix, Oversize, with_format};
use libfuzzer_sys::fuzz_target;

fn check<H: LengthPrefix>(config: Config, stream: &[u8]) {
    let out = run::<H>(config, stream, &[]);
    match config.oversize() {
        // Skip fails on length only beyond its limit, Reject never skips.
        Oversize::Skip => {
            assert!(!matches!(out.error, Some(DecodeError::FrameTooLong { .. })));
            if let Some(DecodeError::TooLongToSkip { len, limit }) = out.error {
                assert!(len > limit && limit == config.max_skip_len());
            }
        }
        _ => {
            assert!(!out.items.iter().any(|o| matches!(o, Out::Skipped(_))));
            assert!(!matches!(
                out.error,
                Some(DecodeError::TooLongToSkip { .. })
            ));
        }
    }
    for item in &out.items {
        if let Out::Skipped(len) = item {
            assert!(
                *len > config
                    .max_frame_len()
                    .min(usize::try_from(H::MAX_VALUE).unwrap_or(usize::MAX))
                    as u64
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let [sel, knobs, stream @ ..] = data else {
        return;
    };
    let policy = if knobs & 1 == 0 {
        Oversize::Reject
    } else {
        Oversize::Skip
    };
    let max = [0, 1, 16, 255, 4096, usize::MAX][usize::from(knobs >> 1) % 6];
    let config = Config::new()
        .with_max_frame_len(max)
        .with_oversize(policy)
        .with_length_includes_header(knobs & 0x80 != 0);
    with_format!(usize::from(*sel), check, config, stream);
});

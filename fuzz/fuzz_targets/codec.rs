//! The tokio-util `Codec` on any bytes, appended to its buffer in fuzzer-chosen pieces, under
//! any maximum, oversize policy and length convention: exactly the frames, skips and error of
//! the crate's `Decoder` fed the whole stream, and never a panic, a loop or a frame over the
//! maximum.
#![no_main]

use buffstreams_framing::harness::CutInput;
use buffstreams_framing::harness::codec::codec_agrees;
use buffstreams_framing::with_format;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(input) = CutInput::parse(data) else {
        return;
    };
    let config = input.config();
    with_format!(
        input.format,
        codec_agrees,
        config,
        input.stream,
        &input.cuts
    );
});

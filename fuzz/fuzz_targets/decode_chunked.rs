//! The same bytes cut at fuzzer-chosen points give exactly the frames, events and error of
//! one feed.
#![no_main]

use buffstreams_framing::harness::CutInput;
use buffstreams_framing::harness::run;
use buffstreams_framing::{Config, LengthPrefix, with_format};
use libfuzzer_sys::fuzz_target;

fn check<H: LengthPrefix>(config: Config, stream: &[u8], cuts: &[usize]) {
    let whole = run::<H>(config, stream, &[]);
    let chunked = run::<H>(config, stream, cuts);
    assert_eq!(whole, chunked, "cuts {cuts:?}");
}

fuzz_target!(|data: &[u8]| {
    let Some(input) = CutInput::parse(data) else {
        return;
    };
    let config = input.config();
    with_format!(input.format, check, config, input.stream, &input.cuts);
});

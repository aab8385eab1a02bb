//! Fuzzer-chosen payloads, encoded then decoded under a fuzzer-chosen chunking, come back
//! byte for byte; payloads over the maximum are refused by the encoder, never half-written.
#![no_main]

use buffstreams_framing::harness::{Out, Outcome, run};
use buffstreams_framing::{Config, EncodeError, Encoder, LengthPrefix, with_format};
use libfuzzer_sys::fuzz_target;

fn check<H: LengthPrefix>(config: Config, payloads: &[&[u8]], step: usize) {
    let enc = Encoder::<H>::new(config);
    let mut wire = Vec::new();
    let mut sent = Vec::new();
    for p in payloads {
        let mut frame = vec![0u8; p.len() + 10];
        match enc.encode(p, &mut frame) {
            Ok(n) => {
                assert_eq!(Ok(n), enc.encoded_len(p.len()));
                wire.extend_from_slice(&frame[..n]);
                sent.push(Out::Frame(p.to_vec()));
            }
            Err(EncodeError::FrameTooLong { len, max }) => {
                assert_eq!(len, p.len());
                assert!(len > max);
            }
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    let cuts: Vec<usize> = (1..wire.len()).step_by(step.max(1)).collect();
    let got = run::<H>(config, &wire, &cuts);
    assert_eq!(
        got,
        Outcome {
            items: sent,
            error: None,
            mid_frame: false
        }
    );
}

fuzz_target!(|data: &[u8]| {
    let [sel, knobs, step, rest @ ..] = data else {
        return;
    };
    // Payloads: each starts with a length byte (scaled for some large frames).
    let mut payloads = Vec::new();
    let mut rest = rest;
    while let [len, tail @ ..] = rest {
        let len = (usize::from(*len) * if knobs & 2 == 0 { 1 } else { 17 }).min(tail.len());
        let (p, tail) = tail.split_at(len);
        payloads.push(p);
        rest = tail;
    }
    let max = [16, 255, 1000, 4096][usize::from(*knobs >> 2) % 4];
    let config = Config::new()
        .with_max_frame_len(max)
        .with_length_includes_header(knobs & 1 == 1);
    with_format!(
        usize::from(*sel),
        check,
        config,
        &payloads,
        usize::from(*step)
    );
});

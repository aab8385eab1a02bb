//! Every prefix, every split point and random chunkings give the frames of one feed.

use buffstreams_framing::harness::{Out, Outcome, encode_all, run};
use buffstreams_framing::{Config, LengthPrefix, Oversize};
use proptest::prelude::*;

fn sample_payloads() -> Vec<Vec<u8>> {
    // 0, 1, 127/128 (varint width change), 200, 300 (two-byte varint, crosses BigEndian<1>)
    vec![
        vec![],
        vec![7],
        vec![1; 127],
        vec![2; 128],
        vec![3; 200],
        (0..=254u8).collect(),
    ]
}

fn payloads_for<H: LengthPrefix>() -> Vec<Vec<u8>> {
    sample_payloads()
        .into_iter()
        .filter(|p| (p.len() as u64) <= H::MAX_VALUE)
        .collect()
}

fn frames(payloads: &[Vec<u8>]) -> Vec<Out> {
    payloads.iter().cloned().map(Out::Frame).collect()
}

fn every_prefix_yields_only_whole_frames<H: LengthPrefix>() {
    let payloads = payloads_for::<H>();
    let cfg = Config::new();
    let stream = encode_all::<H>(cfg, &payloads);
    // Ends of frames in the stream.
    let mut ends = Vec::new();
    let mut at = 0;
    for p in &payloads {
        at += H::header_len(p.len() as u64) + p.len();
        ends.push(at);
    }
    for k in 0..=stream.len() {
        let got = run::<H>(cfg, &stream[..k], &[]);
        let whole = ends.iter().filter(|&&e| e <= k).count();
        assert_eq!(got.items, frames(&payloads[..whole]), "prefix {k}");
        assert_eq!(got.error, None);
        assert_eq!(got.mid_frame, !ends.contains(&k) && k != 0, "prefix {k}");
    }
}

fn every_split_point_gives_same_frames<H: LengthPrefix>() {
    let payloads = payloads_for::<H>();
    let cfg = Config::new();
    let stream = encode_all::<H>(cfg, &payloads);
    let whole = run::<H>(cfg, &stream, &[]);
    assert_eq!(whole.items, frames(&payloads));
    for i in 0..=stream.len() {
        assert_eq!(run::<H>(cfg, &stream, &[i]), whole, "split at {i}");
    }
    // Two cuts close together: a header split after every one of its bytes.
    for i in 0..stream.len().min(400) {
        for j in i..(i + 12).min(stream.len()) {
            assert_eq!(run::<H>(cfg, &stream, &[i, j]), whole, "split at {i},{j}");
        }
    }
    // One byte at a time.
    let ones: Vec<usize> = (1..stream.len()).collect();
    assert_eq!(run::<H>(cfg, &stream, &ones), whole);
}

#[test]
fn every_prefix_is_partial() {
    buffstreams_framing::for_each_format!(every_prefix_yields_only_whole_frames);
}

#[test]
fn every_split_point() {
    buffstreams_framing::for_each_format!(every_split_point_gives_same_frames);
}

fn skip_keeps_stream_in_sync<H: LengthPrefix>() {
    let payloads = payloads_for::<H>();
    let wide = Config::new().with_max_frame_len(usize::MAX);
    let stream = encode_all::<H>(wide, &payloads);
    let max = 100;
    let cfg = Config::new()
        .with_max_frame_len(max)
        .with_oversize(Oversize::Skip);
    let expect: Vec<Out> = payloads
        .iter()
        .map(|p| {
            if p.len() > max {
                Out::Skipped(p.len() as u64)
            } else {
                Out::Frame(p.clone())
            }
        })
        .collect();
    for i in 0..=stream.len() {
        let got = run::<H>(cfg, &stream, &[i]);
        assert_eq!(got.items, expect, "split at {i}");
        assert_eq!(got.error, None);
    }
    // Reject stops at the first oversize frame, whatever the cut.
    let cfg = Config::new().with_max_frame_len(max);
    let first_big = payloads.iter().position(|p| p.len() > max).unwrap();
    for i in 0..=stream.len() {
        let got = run::<H>(cfg, &stream, &[i]);
        assert_eq!(got.items, frames(&payloads[..first_big]), "split at {i}");
        assert!(got.error.is_some());
    }
}

#[test]
fn oversize_skip_keeps_sync() {
    buffstreams_framing::for_each_format!(skip_keeps_stream_in_sync);
}

/// Arbitrary chunk boundaries over a stream.
fn cuts(len: usize) -> impl Strategy<Value = Vec<usize>> {
    proptest::collection::vec(0..=len, 0..16).prop_map(|mut v| {
        v.sort_unstable();
        v
    })
}

fn roundtrip<H: LengthPrefix>(payloads: &[Vec<u8>], cut_seeds: &[usize], includes_header: bool) {
    let cfg = Config::new()
        .with_max_frame_len(2048)
        .with_length_includes_header(includes_header);
    let payloads: Vec<Vec<u8>> = payloads
        .iter()
        .filter(|p| (p.len() as u64) + 10 <= H::MAX_VALUE)
        .cloned()
        .collect();
    let stream = encode_all::<H>(cfg, &payloads);
    let mut cuts: Vec<usize> = cut_seeds.iter().map(|c| c % (stream.len() + 1)).collect();
    cuts.sort_unstable();
    let got = run::<H>(cfg, &stream, &cuts);
    assert_eq!(
        got,
        Outcome {
            items: frames(&payloads),
            error: None,
            mid_frame: false
        }
    );
}

fn same_as_one_feed<H: LengthPrefix>(bytes: &[u8], cut_seeds: &[usize], skip: bool) {
    let policy = if skip {
        Oversize::Skip
    } else {
        Oversize::Reject
    };
    let cfg = Config::new().with_max_frame_len(300).with_oversize(policy);
    let mut cuts: Vec<usize> = cut_seeds.iter().map(|c| c % (bytes.len() + 1)).collect();
    cuts.sort_unstable();
    let whole = run::<H>(cfg, bytes, &[]);
    let chunked = run::<H>(cfg, bytes, &cuts);
    assert_eq!(whole, chunked);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn roundtrip_any_chunking(
        payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..2000), 0..8),
        cut_seeds in proptest::collection::vec(any::<usize>(), 0..20),
        includes_header in any::<bool>(),
    ) {
        buffstreams_framing::for_each_format!(roundtrip, &payloads, &cut_seeds, includes_header);
    }

    #[test]
    fn arbitrary_bytes_any_chunking_same_as_one_feed(
        bytes in proptest::collection::vec(any::<u8>(), 0..600),
        cut_seeds in proptest::collection::vec(any::<usize>(), 0..20),
        skip in any::<bool>(),
    ) {
        buffstreams_framing::for_each_format!(same_as_one_feed, &bytes, &cut_seeds, skip);
    }

    #[test]
    fn random_cuts_of_sample_stream(c in cuts(2000)) {
        type H = buffstreams_framing::Varint32;
        let payloads = payloads_for::<H>();
        let stream = encode_all::<H>(Config::new(), &payloads);
        let got = run::<H>(Config::new(), &stream, &c);
        prop_assert_eq!(got.items, frames(&payloads));
    }
}

/// A tiny independent model of a BigEndian<4> stream, checked against the decoder.
fn model_be4(bytes: &[u8], max: usize) -> (Vec<Out>, bool) {
    let mut items = Vec::new();
    let mut at = 0;
    while bytes.len() - at >= 4 {
        let len = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        if len > max {
            return (items, true);
        }
        if bytes.len() - at - 4 < len {
            break;
        }
        items.push(Out::Frame(bytes[at + 4..at + 4 + len].to_vec()));
        at += 4 + len;
    }
    (items, false)
}

proptest! {
    #[test]
    fn decoder_matches_model(bytes in proptest::collection::vec(prop_oneof![Just(0u8), any::<u8>()], 0..400), c in cuts(400)) {
        let cfg = Config::new().with_max_frame_len(64);
        let got = run::<buffstreams_framing::BigEndian<4>>(cfg, &bytes, &c);
        let (items, err) = model_be4(&bytes, 64);
        prop_assert_eq!(got.items, items);
        prop_assert_eq!(got.error.is_some(), err);
    }
}

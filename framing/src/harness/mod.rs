//! Test support shared by the test suites and the fuzz targets (private feature `_harness`):
//! drives a decoder over a stream cut at given points and checks the feed contract on every
//! call. Not part of the public API.
#![allow(
    clippy::indexing_slicing,
    clippy::panic,
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    reason = "test support: a failed assertion is the report"
)]

pub mod acked;
#[cfg(feature = "tokio-util")]
pub mod codec;

use alloc::vec;
use alloc::vec::Vec;

use crate::{Config, DecodeError, Decoder, Encoder, Event, LengthPrefix, Oversize};

/// What a decoder produced over a whole stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Out {
    /// A frame's payload.
    Frame(Vec<u8>),
    /// A skipped oversize frame's declared length.
    Skipped(u64),
}

/// Items, error and final state of one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Frames and events in order.
    pub items: Vec<Out>,
    /// The error the run stopped at.
    pub error: Option<DecodeError>,
    /// Whether the stream ended inside a frame.
    pub mid_frame: bool,
}

/// `stream` cut at `cuts` (sorted offsets, clamped to the stream): the pieces in order, the
/// last one running to the end.
pub fn pieces<'a>(stream: &'a [u8], cuts: &[usize]) -> impl Iterator<Item = &'a [u8]> {
    let mut start = 0;
    cuts.iter()
        .copied()
        .chain(core::iter::once(stream.len()))
        .map(move |end| {
            let end = end.clamp(start, stream.len());
            let piece = &stream[start..end];
            start = end;
            piece
        })
}

/// Feeds `stream` cut at `cuts` (sorted offsets), checking the feed contract on every call.
pub fn run<H: LengthPrefix>(config: Config, stream: &[u8], cuts: &[usize]) -> Outcome {
    let mut dec = Decoder::<H, _>::new(config, vec![0u8; 0]);
    let mut items = Vec::new();
    for mut chunk in pieces(stream, cuts) {
        // Bounded: every call must consume a byte or yield an item.
        for _ in 0..=chunk.len() * 2 + 2 {
            if chunk.is_empty() {
                break;
            }
            match dec.feed(chunk) {
                Ok(f) => {
                    assert!(f.consumed <= chunk.len(), "consumed past the input");
                    assert!(f.consumed > 0 || f.event.is_some(), "no progress");
                    match f.event {
                        Some(Event::Frame(p)) => {
                            assert!(p.len() <= dec_max(&config));
                            items.push(Out::Frame(p.to_vec()))
                        }
                        Some(Event::Skipped(n)) => items.push(Out::Skipped(n)),
                        None => {
                            assert_eq!(f.consumed, chunk.len(), "stopped early without an item")
                        }
                    }
                    chunk = &chunk[f.consumed..];
                }
                Err(e) => {
                    assert_eq!(dec.feed(b"x"), Err(e), "decoder must stay failed");
                    return Outcome {
                        items,
                        error: Some(e),
                        mid_frame: false,
                    };
                }
            }
        }
        assert!(chunk.is_empty(), "feed loop did not finish");
    }
    Outcome {
        items,
        error: None,
        mid_frame: dec.is_mid_frame(),
    }
}

fn dec_max(config: &Config) -> usize {
    config.max_frame_len()
}

/// A fuzz input for a stream cut in pieces: a format selector, a byte of knobs, then up to
/// 15 cut offsets (each a step from the last) and the stream itself.
#[derive(Debug)]
pub struct CutInput<'a> {
    pub format: usize,
    knobs: u8,
    pub cuts: Vec<usize>,
    pub stream: &'a [u8],
}

impl<'a> CutInput<'a> {
    /// Reads one from fuzzer bytes; `None` when there are too few.
    pub fn parse(data: &'a [u8]) -> Option<Self> {
        let [sel, knobs, ncuts, rest @ ..] = data else {
            return None;
        };
        let ncuts = usize::from(*ncuts % 16).min(rest.len());
        let (cut_bytes, stream) = rest.split_at(ncuts);
        let mut cuts = Vec::with_capacity(ncuts);
        let mut at = 0usize;
        for &c in cut_bytes {
            at += usize::from(c);
            cuts.push(at.min(stream.len()));
        }
        Some(Self {
            format: usize::from(*sel),
            knobs: *knobs,
            cuts,
            stream,
        })
    }

    /// The decoding limits the knobs choose: the oversize policy (bit 0), the maximum (bits
    /// 1-3: 0, 3, 64, 300 or 4096 bytes) and whether the length counts the header (bit 7).
    pub fn config(&self) -> Config {
        let policy = if self.knobs & 1 == 0 {
            Oversize::Reject
        } else {
            Oversize::Skip
        };
        let max = [0, 3, 64, 300, 4096][usize::from((self.knobs >> 1) & 7) % 5];
        Config::new()
            .with_max_frame_len(max)
            .with_oversize(policy)
            .with_max_skip_len(1 << 16)
            .with_length_includes_header(self.knobs & 0x80 != 0)
    }
}

/// Frames `payloads` with `H` (no maximum other than the header's).
pub fn encode_all<H: LengthPrefix>(config: Config, payloads: &[Vec<u8>]) -> Vec<u8> {
    let enc = Encoder::<H>::new(config);
    let mut out = Vec::new();
    for p in payloads {
        let h = enc.header(p.len()).expect("payload fits");
        out.extend_from_slice(&h);
        out.extend_from_slice(p);
    }
    out
}

/// Calls `$f::<H>(args)` for every header format we ship.
#[macro_export]
macro_rules! for_each_format {
    ($f:ident $(, $arg:expr)*) => {{
        use $crate::*;
        $f::<BigEndian<1>>($($arg),*);
        $f::<BigEndian<2>>($($arg),*);
        $f::<BigEndian<3>>($($arg),*);
        $f::<BigEndian<4>>($($arg),*);
        $f::<BigEndian<5>>($($arg),*);
        $f::<BigEndian<6>>($($arg),*);
        $f::<BigEndian<7>>($($arg),*);
        $f::<BigEndian<8>>($($arg),*);
        $f::<LittleEndian<1>>($($arg),*);
        $f::<LittleEndian<2>>($($arg),*);
        $f::<LittleEndian<3>>($($arg),*);
        $f::<LittleEndian<4>>($($arg),*);
        $f::<LittleEndian<8>>($($arg),*);
        $f::<Varint32>($($arg),*);
        $f::<Varint64>($($arg),*);
        $f::<BuffStreams<2>>($($arg),*);
        $f::<BuffStreams<3>>($($arg),*);
        $f::<BuffStreams<4>>($($arg),*);
    }};
}

/// Calls `$f::<H>(args)` for the header format numbered `$sel % FORMATS` (the order of
/// [`for_each_format!`]), so a fuzzer can pick the format with one byte.
#[macro_export]
macro_rules! with_format {
    ($sel:expr, $f:ident $(, $arg:expr)*) => {{
        use $crate::*;
        match $sel % $crate::harness::FORMATS {
            0 => $f::<BigEndian<1>>($($arg),*),
            1 => $f::<BigEndian<2>>($($arg),*),
            2 => $f::<BigEndian<3>>($($arg),*),
            3 => $f::<BigEndian<4>>($($arg),*),
            4 => $f::<BigEndian<5>>($($arg),*),
            5 => $f::<BigEndian<6>>($($arg),*),
            6 => $f::<BigEndian<7>>($($arg),*),
            7 => $f::<BigEndian<8>>($($arg),*),
            8 => $f::<LittleEndian<1>>($($arg),*),
            9 => $f::<LittleEndian<2>>($($arg),*),
            10 => $f::<LittleEndian<3>>($($arg),*),
            11 => $f::<LittleEndian<4>>($($arg),*),
            12 => $f::<LittleEndian<8>>($($arg),*),
            13 => $f::<Varint32>($($arg),*),
            14 => $f::<Varint64>($($arg),*),
            15 => $f::<BuffStreams<2>>($($arg),*),
            16 => $f::<BuffStreams<3>>($($arg),*),
            _ => $f::<BuffStreams<4>>($($arg),*),
        }
    }};
}

/// How many formats [`with_format!`] and [`for_each_format!`] cover.
pub const FORMATS: usize = 18;

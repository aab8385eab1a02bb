//! The tokio-util `Codec` against the crate's `Decoder` (its oracle): the same bytes, cut at
//! the same points, must give the same frames, skips and error. Used by `tests/codec.rs` and
//! the `codec` fuzz target.

use alloc::vec::Vec;

use bytes::BytesMut;
use tokio_util::codec::Decoder as _;

use super::{Out, pieces, run};
use crate::{Codec, CodecError, Config, DecodeError, LengthPrefix};

/// What the codec makes of `stream` appended to its buffer in chunks cut at `cuts` (sorted
/// offsets): its frames, its first error and its count of skipped frames.
pub fn run_codec<H: LengthPrefix>(
    config: Config,
    stream: &[u8],
    cuts: &[usize],
) -> (Vec<Out>, Option<DecodeError>, u64) {
    let mut codec = Codec::<H>::new(config);
    let mut buf = BytesMut::new();
    let mut items = Vec::new();
    for piece in pieces(stream, cuts) {
        buf.extend_from_slice(piece);
        // Bounded: every frame takes at least a header byte from the buffer.
        for _ in 0..=stream.len() + 1 {
            let before = buf.len();
            match codec.decode(&mut buf) {
                Ok(Some(frame)) => {
                    assert!(buf.len() < before, "a frame out of nothing");
                    assert!(
                        frame.len() <= codec.max_frame_len(),
                        "a frame over the maximum"
                    );
                    items.push(Out::Frame(frame.to_vec()));
                }
                Ok(None) => break,
                Err(CodecError::Decode(e)) => return (items, Some(e), codec.skipped()),
                Err(e) => panic!("decode gave {e}"),
            }
        }
    }
    (items, None, codec.skipped())
}

/// The codec and the decoder agree on `stream` cut at `cuts` (the decoder fed it whole).
pub fn codec_agrees<H: LengthPrefix>(config: Config, stream: &[u8], cuts: &[usize]) {
    let want = run::<H>(config, stream, &[]);
    let (frames, error, skipped) = run_codec::<H>(config, stream, cuts);
    let want_frames: Vec<Out> = want
        .items
        .iter()
        .filter(|o| matches!(o, Out::Frame(_)))
        .cloned()
        .collect();
    let want_skipped = (want.items.len() - want_frames.len()) as u64;
    assert_eq!(frames, want_frames, "frames, cuts {cuts:?}");
    assert_eq!(error, want.error, "error, cuts {cuts:?}");
    assert_eq!(skipped, want_skipped, "skips, cuts {cuts:?}");
}

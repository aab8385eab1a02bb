//! For the fixed-width formats tokio-util supports, our decoder and its
//! `LengthDelimitedCodec` agree on every frame and on where the stream errors.
#![no_main]

use buffstreams_framing::harness::{Out, run};
use buffstreams_framing::{BigEndian, Config, LengthPrefix, LittleEndian};
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::{Decoder as _, LengthDelimitedCodec};

fn check<H: LengthPrefix>(width: usize, little: bool, max: usize, stream: &[u8], split: usize) {
    let ours = run::<H>(Config::new().with_max_frame_len(max), stream, &[split]);

    let mut b = LengthDelimitedCodec::builder();
    b.length_field_length(width).max_frame_length(max);
    if little {
        b.little_endian();
    }
    let mut codec = b.new_codec();
    let mut buf = BytesMut::new();
    let mut theirs = Vec::new();
    let mut their_error = false;
    'outer: for part in [&stream[..split], &stream[split..]] {
        buf.extend_from_slice(part);
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(f)) => theirs.push(Out::Frame(f.to_vec())),
                Ok(None) => break,
                Err(_) => {
                    their_error = true;
                    break 'outer;
                }
            }
        }
    }
    assert_eq!(ours.items, theirs);
    assert_eq!(ours.error.is_some(), their_error, "{:?}", ours.error);
}

fuzz_target!(|data: &[u8]| {
    let [sel, knobs, stream @ ..] = data else {
        return;
    };
    let max = [0, 1, 100, 4096][usize::from(*knobs) % 4];
    let split = usize::from(knobs >> 2).min(stream.len());
    match sel % 16 {
        0 => check::<BigEndian<1>>(1, false, max, stream, split),
        1 => check::<BigEndian<2>>(2, false, max, stream, split),
        2 => check::<BigEndian<3>>(3, false, max, stream, split),
        3 => check::<BigEndian<4>>(4, false, max, stream, split),
        4 => check::<BigEndian<5>>(5, false, max, stream, split),
        5 => check::<BigEndian<6>>(6, false, max, stream, split),
        6 => check::<BigEndian<7>>(7, false, max, stream, split),
        7 => check::<BigEndian<8>>(8, false, max, stream, split),
        8 => check::<LittleEndian<1>>(1, true, max, stream, split),
        9 => check::<LittleEndian<2>>(2, true, max, stream, split),
        10 => check::<LittleEndian<3>>(3, true, max, stream, split),
        11 => check::<LittleEndian<4>>(4, true, max, stream, split),
        12 => check::<LittleEndian<5>>(5, true, max, stream, split),
        13 => check::<LittleEndian<6>>(6, true, max, stream, split),
        14 => check::<LittleEndian<7>>(7, true, max, stream, split),
        _ => check::<LittleEndian<8>>(8, true, max, stream, split),
    }
});

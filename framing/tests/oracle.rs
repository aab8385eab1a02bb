//! Independent oracles: tokio-util's `LengthDelimitedCodec` and prost's length delimiters.

use buffstreams_framing::harness::{Out, encode_all, run};
use buffstreams_framing::{
    BigEndian, Config, Encoder, LengthPrefix, LittleEndian, Varint32, Varint64,
};
use bytes::BytesMut;
use proptest::prelude::*;
use tokio_util::codec::{Decoder as _, Encoder as _, LengthDelimitedCodec};

fn tokio_codec(width: usize, little: bool, max: usize) -> LengthDelimitedCodec {
    let mut b = LengthDelimitedCodec::builder();
    b.length_field_length(width).max_frame_length(max);
    if little {
        b.little_endian();
    }
    b.new_codec()
}

/// tokio-util encodes, we decode (cut at `cut`), and the reverse.
fn against_tokio<H: LengthPrefix>(width: usize, little: bool, payloads: &[Vec<u8>], cut: usize) {
    let max = usize::try_from(H::MAX_VALUE)
        .unwrap_or(usize::MAX)
        .min(4096);
    let payloads: Vec<Vec<u8>> = payloads
        .iter()
        .filter(|p| p.len() <= max)
        .cloned()
        .collect();
    let cfg = Config::new().with_max_frame_len(max);

    let mut codec = tokio_codec(width, little, max);
    let mut theirs = BytesMut::new();
    for p in &payloads {
        codec
            .encode(bytes::Bytes::copy_from_slice(p), &mut theirs)
            .unwrap();
    }
    let ours = encode_all::<H>(cfg, &payloads);
    assert_eq!(
        &theirs[..],
        &ours[..],
        "encoders disagree (width {width}, little {little})"
    );

    let got = run::<H>(cfg, &theirs, &[cut % (theirs.len() + 1)]);
    assert_eq!(
        got.items,
        payloads.iter().cloned().map(Out::Frame).collect::<Vec<_>>()
    );

    let mut buf = BytesMut::from(&ours[..]);
    let mut decoded = Vec::new();
    while let Some(f) = codec.decode(&mut buf).unwrap() {
        decoded.push(f.to_vec());
    }
    assert_eq!(decoded, payloads);
}

/// Both refuse an oversize header at the same place.
fn oversize_like_tokio<H: LengthPrefix>(width: usize, little: bool) {
    let max = 100;
    let enc = Encoder::<H>::new(Config::new().with_max_frame_len(usize::MAX));
    let mut stream = enc.header(3).unwrap().to_vec();
    stream.extend_from_slice(b"abc");
    stream.extend_from_slice(&enc.header(101).unwrap());
    stream.extend_from_slice(&[0u8; 101]);
    let ours = run::<H>(Config::new().with_max_frame_len(max), &stream, &[]);
    let mut codec = tokio_codec(width, little, max);
    let mut buf = BytesMut::from(&stream[..]);
    assert_eq!(codec.decode(&mut buf).unwrap().unwrap().to_vec(), b"abc");
    assert!(codec.decode(&mut buf).is_err());
    assert_eq!(ours.items, vec![Out::Frame(b"abc".to_vec())]);
    assert!(ours.error.is_some());
}

macro_rules! widths {
    ($f:ident $(, $arg:expr)*) => {
        $f::<BigEndian<1>>(1, false $(, $arg)*);
        $f::<BigEndian<2>>(2, false $(, $arg)*);
        $f::<BigEndian<3>>(3, false $(, $arg)*);
        $f::<BigEndian<4>>(4, false $(, $arg)*);
        $f::<BigEndian<5>>(5, false $(, $arg)*);
        $f::<BigEndian<6>>(6, false $(, $arg)*);
        $f::<BigEndian<7>>(7, false $(, $arg)*);
        $f::<BigEndian<8>>(8, false $(, $arg)*);
        $f::<LittleEndian<1>>(1, true $(, $arg)*);
        $f::<LittleEndian<2>>(2, true $(, $arg)*);
        $f::<LittleEndian<3>>(3, true $(, $arg)*);
        $f::<LittleEndian<4>>(4, true $(, $arg)*);
        $f::<LittleEndian<5>>(5, true $(, $arg)*);
        $f::<LittleEndian<6>>(6, true $(, $arg)*);
        $f::<LittleEndian<7>>(7, true $(, $arg)*);
        $f::<LittleEndian<8>>(8, true $(, $arg)*);
    };
}

#[test]
fn oversize_rejected_like_tokio() {
    widths!(oversize_like_tokio);
}

proptest! {
    #[test]
    fn tokio_util_oracle(
        payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..600), 0..6),
        cut in any::<usize>(),
    ) {
        widths!(against_tokio, &payloads, cut);
    }

    #[test]
    fn prost_length_delimiter_oracle(len in prop_oneof![0usize..300, any::<u32>().prop_map(|v| v as usize)]) {
        let mut theirs = Vec::new();
        prost::encode_length_delimiter(len, &mut theirs).unwrap();
        prop_assert_eq!(&*Varint32::emit(len as u64).unwrap(), &theirs[..]);
        prop_assert_eq!(&*Varint64::emit(len as u64).unwrap(), &theirs[..]);
        prop_assert_eq!(Varint32::header_len(len as u64), prost::length_delimiter_len(len));
        let parsed = Varint32::parse(&theirs).unwrap();
        prop_assert_eq!(parsed, buffstreams_framing::Parsed::Complete { value: len as u64, header_len: theirs.len() });
        // And prost reads ours back.
        let ours = Varint64::emit(len as u64).unwrap();
        prop_assert_eq!(prost::decode_length_delimiter(&*ours).unwrap(), len);
    }
}

#[derive(Clone, PartialEq, prost_derive::Message)]
struct Reading {
    #[prost(uint32, tag = "1")]
    sensor: u32,
    #[prost(string, tag = "2")]
    label: String,
    #[prost(bytes = "vec", tag = "3")]
    samples: Vec<u8>,
}

/// A protobuf delimited stream written by prost decodes message by message.
#[test]
fn prost_delimited_messages() {
    use prost::Message;
    let msgs: Vec<Reading> = (0..50)
        .map(|i| Reading {
            sensor: i,
            label: format!("sensor-{i}"),
            samples: vec![i as u8; i as usize * 7],
        })
        .collect();
    let mut wire = Vec::new();
    for m in &msgs {
        m.encode_length_delimited(&mut wire).unwrap();
    }
    for cut in [0, 1, 2, 3, 50, wire.len() / 2, wire.len()] {
        let got = run::<Varint32>(Config::new(), &wire, &[cut]);
        let decoded: Vec<Reading> = got
            .items
            .iter()
            .map(|o| match o {
                Out::Frame(f) => Reading::decode(&f[..]).unwrap(),
                Out::Skipped(_) => panic!("nothing is oversize"),
            })
            .collect();
        assert_eq!(decoded, msgs);
    }
}

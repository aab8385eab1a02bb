//! Unit tests of the decoder.

use super::*;
use crate::header::{BigEndian, BuffStreams, Varint32};

#[test]
fn read_empty_frame() {
    let mut d = Decoder::<BigEndian<4>, _>::new(Config::new(), [0u8; 8]);
    let f = d.feed(&[0, 0, 0, 0, 9]).unwrap();
    assert_eq!((f.consumed, f.event), (4, Some(Event::Frame(&[][..]))));
}

#[test]
fn read_incomplete_head() {
    let mut d = Decoder::<BigEndian<4>, _>::new(Config::new(), [0u8; 8]);
    assert_eq!(
        d.feed(&[0, 0]).unwrap(),
        Feed {
            consumed: 2,
            event: None
        }
    );
    assert!(d.is_mid_frame());
    let f = d.feed(&[0, 1, 7, 8]).unwrap();
    assert_eq!((f.consumed, f.event), (3, Some(Event::Frame(&[7][..]))));
    assert!(!d.is_mid_frame());
}

/// `decode` + `event` is `feed` split in two: the same items for every cut of a stream,
/// with frames borrowed from the input when they lie inside it.
#[test]
fn decode_then_event_matches_feed() {
    let stream = [0, 2, b'h', b'i', 0, 3, b'a', b'b', b'c', 0, 0, 0, 1, b'!'];
    for cut in 0..=stream.len() {
        let mut a = Decoder::<BigEndian<2>, _>::new(Config::new(), [0u8; 8]);
        let mut b = Decoder::<BigEndian<2>, _>::new(Config::new(), [0u8; 8]);
        let (mut via_feed, mut via_decode) =
            (heapless::Vec::<_, 8>::new(), heapless::Vec::<_, 8>::new());
        for part in [&stream[..cut], &stream[cut..]] {
            let mut rest = part;
            while !rest.is_empty() {
                let f = a.feed(rest).unwrap();
                if let Some(Event::Frame(p)) = f.event {
                    via_feed
                        .push(heapless::Vec::<u8, 4>::from_slice(p).unwrap())
                        .unwrap();
                }
                rest = &rest[f.consumed..];
            }
            let mut pos = 0;
            while pos < part.len() {
                let d = b.decode(&part[pos..]).unwrap();
                if let Some(found) = d.found {
                    // Resolving against the whole part needs the sub-slice's offset.
                    let Some(Event::Frame(p)) = b.event(part, found.offset(pos)) else {
                        panic!("no frame for {found:?}")
                    };
                    if let Found::InInput { start, .. } = found.offset(pos) {
                        assert!(core::ptr::eq(p.as_ptr(), part[start..].as_ptr()));
                    }
                    via_decode
                        .push(heapless::Vec::<u8, 4>::from_slice(p).unwrap())
                        .unwrap();
                }
                pos += d.consumed;
            }
        }
        assert_eq!(via_feed, via_decode, "cut at {cut}");
        assert_eq!(via_decode.len(), 4, "cut at {cut}");
    }
}

#[test]
fn event_on_wrong_input_is_none_not_panic() {
    let mut d = Decoder::<BigEndian<1>, _>::new(Config::new(), [0u8; 8]);
    let found = d.decode(&[3, 1, 2, 3]).unwrap().found.unwrap();
    assert_eq!(found, Found::InInput { start: 1, len: 3 });
    assert_eq!(d.event(&[3, 1], found), None);
    assert_eq!(d.event(&[], Found::Stored { len: 9 }), None);
    let far = Found::InInput {
        start: usize::MAX,
        len: 2,
    };
    assert_eq!(d.event(&[0; 4], far), None);
}

#[test]
fn const_new_in_a_static() {
    static CONFIG: Config = Config::new().with_max_frame_len(100);
    const DEC: Decoder<Varint32, [u8; 64]> = Decoder::new(CONFIG, [0; 64]);
    let mut d = DEC;
    assert_eq!(d.max_frame_len(), 64);
    assert_eq!(
        d.feed(&[65]),
        Err(DecodeError::FrameTooLong { len: 65, max: 64 })
    );
}

#[test]
fn read_max_frame_len() {
    let mut d = Decoder::<BigEndian<4>, _>::new(Config::new().with_max_frame_len(3), [0u8; 8]);
    assert_eq!(
        d.feed(&[0, 0, 0, 3, 1, 2, 3]).unwrap().event,
        Some(Event::Frame(&[1, 2, 3][..]))
    );
    assert_eq!(
        d.feed(&[0, 0, 0, 4]),
        Err(DecodeError::FrameTooLong { len: 4, max: 3 })
    );
    // Poisoned until reset.
    assert_eq!(
        d.feed(&[0, 0, 0, 0]),
        Err(DecodeError::FrameTooLong { len: 4, max: 3 })
    );
    d.reset();
    assert_eq!(
        d.feed(&[0, 0, 0, 0]).unwrap().event,
        Some(Event::Frame(&[][..]))
    );
}

#[test]
fn max_capped_by_storage_and_header() {
    let d = Decoder::<BigEndian<1>, _>::new(Config::new(), [0u8; 4096]);
    assert_eq!(d.max_frame_len(), 255);
    let d = Decoder::<BigEndian<4>, _>::new(Config::new(), [0u8; 100]);
    assert_eq!(d.max_frame_len(), 100);
}

#[test]
fn skip_oversize_keeps_sync() {
    let cfg = Config::new()
        .with_max_frame_len(2)
        .with_oversize(Oversize::Skip);
    let mut d = Decoder::<BigEndian<2>, _>::new(cfg, [0u8; 2]);
    let stream = [0, 5, 1, 2, 3, 4, 5, 0, 2, 9, 9];
    let f = d.feed(&stream).unwrap();
    assert_eq!((f.consumed, f.event), (7, Some(Event::Skipped(5))));
    let f = d.feed(&stream[7..]).unwrap();
    assert_eq!(f.event, Some(Event::Frame(&[9, 9][..])));
    // Split skip: nothing stored, exactly the payload is discarded.
    assert_eq!(
        d.feed(&[0, 5, 1]).unwrap(),
        Feed {
            consumed: 3,
            event: None
        }
    );
    assert_eq!(
        d.feed(&[2, 3, 4, 5, 0]).unwrap(),
        Feed {
            consumed: 4,
            event: Some(Event::Skipped(5))
        }
    );
}

#[test]
fn length_includes_header() {
    let cfg = Config::new().with_length_includes_header(true);
    let mut d = Decoder::<BigEndian<2>, _>::new(cfg, [0u8; 8]);
    assert_eq!(
        d.feed(&[0, 4, 7, 8]).unwrap().event,
        Some(Event::Frame(&[7, 8][..]))
    );
    assert_eq!(d.feed(&[0, 1]), Err(DecodeError::LengthUnderflow));
}

#[test]
fn split_varint_header() {
    let mut d = Decoder::<Varint32, _>::new(Config::new(), [0u8; 400]);
    let mut frame = [0u8; 302];
    frame[0] = 0xac;
    frame[1] = 0x02;
    assert_eq!(
        d.feed(&frame[..1]).unwrap(),
        Feed {
            consumed: 1,
            event: None
        }
    );
    let f = d.feed(&frame[1..]).unwrap();
    assert_eq!(f.consumed, 301);
    assert_eq!(f.event, Some(Event::Frame(&[0u8; 300][..])));
}

#[test]
fn buffstreams_negative_length_is_error() {
    let mut d = Decoder::<BuffStreams<3>, _>::new(Config::new(), [0u8; 8]);
    assert_eq!(d.feed(&[0x03, 0, 0]), Err(DecodeError::NegativeLength));
}

#[test]
fn huge_declared_length_on_any_width() {
    let mut d = Decoder::<BigEndian<8>, _>::new(Config::new(), [0u8; 8]);
    assert_eq!(
        d.feed(&[0xff; 8]),
        Err(DecodeError::FrameTooLong {
            len: u64::MAX,
            max: 8
        })
    );
    // Skipping that much is refused by default (see below); raised, the limit allows it.
    let cfg = Config::new()
        .with_oversize(Oversize::Skip)
        .with_max_skip_len(u64::MAX);
    let mut d = Decoder::<BigEndian<8>, _>::new(cfg, [0u8; 8]);
    assert_eq!(
        d.feed(&[0xff; 12]).unwrap(),
        Feed {
            consumed: 12,
            event: None
        }
    );
    assert!(d.is_mid_frame());
}

#[test]
fn heapless_vec_storage() {
    let mut d = Decoder::<BigEndian<1>, _>::new(Config::new(), heapless::Vec::<u8, 4>::new());
    assert_eq!(d.max_frame_len(), 4);
    d.feed(&[3, 1]).unwrap();
    assert_eq!(
        d.feed(&[2, 3]).unwrap().event,
        Some(Event::Frame(&[1, 2, 3][..]))
    );
}

/// Fuzz finding (`decode`, input `0b 23 06 e5 29 e5`): LittleEndian<4> with no maximum
/// declared 0xe529e506 bytes and `Vec` storage was resized to 3.8 GB before a payload
/// byte arrived. Storage now grows only with the bytes received.
#[cfg(feature = "std")]
#[test]
fn regression_declared_length_is_not_allocated() {
    use crate::header::LittleEndian;
    let cfg = Config::new()
        .with_max_frame_len(usize::MAX)
        .with_oversize(Oversize::Skip);
    let mut d = Decoder::<LittleEndian<4>, _>::new(cfg, alloc::vec::Vec::new());
    assert_eq!(
        d.feed(&[0x06, 0xe5, 0x29, 0xe5]).unwrap(),
        Feed {
            consumed: 4,
            event: None
        }
    );
    assert_eq!(
        d.feed(&[1, 2, 3]).unwrap(),
        Feed {
            consumed: 3,
            event: None
        }
    );
    let storage = d.into_storage();
    assert_eq!(storage.len(), 3);
    assert!(storage.capacity() < 1024);
}

#[test]
fn skip_refuses_lengths_beyond_its_limit() {
    // An 8-byte header with its top bit set (Netty: a negative length) cannot be skipped:
    // discarding 2^63 bytes would swallow the stream for the rest of its life.
    let cfg = Config::new()
        .with_max_frame_len(4)
        .with_oversize(Oversize::Skip);
    let mut d = Decoder::<BigEndian<8>, _>::new(cfg, [0u8; 4]);
    let err = d.feed(&[0x80, 0, 0, 0, 0, 0, 0, 1]).unwrap_err();
    assert_eq!(
        err,
        DecodeError::TooLongToSkip {
            len: (1 << 63) + 1,
            limit: crate::DEFAULT_MAX_SKIP_LEN
        }
    );
    assert_eq!(d.error(), Some(err));
    // The default limit lets every 4-byte length be skipped.
    let mut d = Decoder::<BigEndian<8>, _>::new(cfg, [0u8; 4]);
    let wire = u64::from(u32::MAX).to_be_bytes();
    let f = d.feed(&wire).unwrap();
    assert_eq!(f.event, None);
    assert!(d.is_mid_frame());
    // A lower limit, exactly at and one over.
    let cfg = cfg.with_max_skip_len(100);
    let mut d = Decoder::<BigEndian<4>, _>::new(cfg, [0u8; 4]);
    let mut wire = 100u32.to_be_bytes().to_vec();
    wire.extend_from_slice(&[0; 100]);
    let f = d.feed(&wire).unwrap();
    assert_eq!((f.consumed, f.event), (104, Some(Event::Skipped(100))));
    assert_eq!(
        d.feed(&101u32.to_be_bytes()).unwrap_err(),
        DecodeError::TooLongToSkip {
            len: 101,
            limit: 100
        }
    );
}

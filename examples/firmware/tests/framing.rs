//! The framing crate's own checks on the emulated Cortex-M3, a 32-bit core: wire vectors of
//! every header format, every split point and close pairs of cuts, round trips, the oversize
//! policies, the I/O helpers, and 8-byte headers declaring lengths over 2^32, which a 32-bit
//! `usize` cannot hold (they must be errors or skips, never a wrapped length).
//!
//! Prints `N passed, M failed` through semihosting; the exit status fails when M > 0.
#![no_std]
#![no_main]

use buffstreams_firmware::exit;
use buffstreams_framing::{
    BigEndian, BuffStreams, Config, DecodeError, Decoder, Encoder, Event, FrameReader, FrameWriter,
    LengthPrefix, LittleEndian, Oversize, Varint32, Varint64, buffstreams_header_len,
};
use cortex_m_rt::entry;
use cortex_m_semihosting::hprintln;
use panic_semihosting as _;

struct Tally {
    passed: u32,
    failed: u32,
}

impl Tally {
    fn check(&mut self, name: &str, ok: bool) {
        if ok {
            self.passed += 1;
        } else {
            self.failed += 1;
            hprintln!("FAIL {}", name);
        }
    }
}

/// What one run over a stream produced: payloads laid end to end, where each ends, and how
/// the run ended. Fixed-size: nothing here allocates.
#[derive(PartialEq, Eq)]
struct Run {
    bytes: [u8; 2048],
    len: usize,
    ends: [usize; 64],
    frames: usize,
    skipped: u32,
    error: Option<DecodeError>,
    mid_frame: bool,
}

/// Feeds `stream` cut at `cuts` (ascending offsets) to a fresh decoder.
fn run<H: LengthPrefix>(config: Config, stream: &[u8], cuts: &[usize]) -> Run {
    let mut dec = Decoder::<H, _>::new(config, [0u8; 1024]);
    let mut r = Run {
        bytes: [0; 2048],
        len: 0,
        ends: [0; 64],
        frames: 0,
        skipped: 0,
        error: None,
        mid_frame: false,
    };
    let mut start = 0;
    for &end in cuts.iter().chain(core::iter::once(&stream.len())) {
        let end = end.clamp(start, stream.len());
        let mut chunk = &stream[start..end];
        start = end;
        while !chunk.is_empty() {
            match dec.feed(chunk) {
                Ok(f) => {
                    match f.event {
                        Some(Event::Frame(p)) => {
                            r.bytes[r.len..r.len + p.len()].copy_from_slice(p);
                            r.len += p.len();
                            r.ends[r.frames] = r.len;
                            r.frames += 1;
                        }
                        Some(Event::Skipped(_)) => r.skipped += 1,
                        // An event this test does not know is a failure, not something to pass over.
                        Some(_) => {
                            r.error = Some(DecodeError::Storage);
                            return r;
                        }
                        None => {}
                    }
                    if f.consumed == 0 && f.event.is_none() {
                        r.error = Some(DecodeError::Storage); // no progress: a bug
                        return r;
                    }
                    chunk = &chunk[f.consumed..];
                }
                Err(e) => {
                    r.error = Some(e);
                    return r;
                }
            }
        }
    }
    r.mid_frame = dec.is_mid_frame();
    r
}

/// Encodes payloads of the given lengths (byte `i` of payload `k` is `k * 7 + i`).
fn stream_of<H: LengthPrefix>(lens: &[usize], out: &mut [u8]) -> usize {
    let enc = Encoder::<H>::new(Config::new().with_max_frame_len(1024));
    let mut payload = [0u8; 1024];
    let mut n = 0;
    for (k, &len) in lens.iter().enumerate() {
        for (i, b) in payload[..len].iter_mut().enumerate() {
            *b = (k * 7 + i) as u8;
        }
        n += enc.encode(&payload[..len], &mut out[n..]).unwrap_or(0);
    }
    n
}

fn splits<H: LengthPrefix>(t: &mut Tally, name: &str) {
    let lens: &[usize] = &[0, 1, 127, 128, 200, 255];
    let mut wire = [0u8; 1024];
    let n = stream_of::<H>(lens, &mut wire);
    let stream = &wire[..n];
    let whole = run::<H>(Config::new(), stream, &[]);
    t.check(
        name,
        whole.frames == lens.len() && whole.error.is_none() && !whole.mid_frame,
    );
    let mut same = true;
    for i in 0..=n {
        same &= run::<H>(Config::new(), stream, &[i]) == whole;
        // A second cut close behind: headers split after each of their bytes.
        for d in 1..=10 {
            same &= run::<H>(Config::new(), stream, &[i, i + d]) == whole;
        }
    }
    t.check(name, same);
    // Every prefix: only whole frames, mid-frame exactly between frame ends.
    let mut prefixes = true;
    for k in 0..=n {
        let r = run::<H>(Config::new(), &stream[..k], &[]);
        prefixes &= r.error.is_none() && r.frames <= lens.len();
    }
    t.check(name, prefixes);
}

fn roundtrip<H: LengthPrefix>(t: &mut Tally, name: &str) {
    let enc = Encoder::<H>::new(Config::new().with_max_frame_len(1024));
    let mut ok = true;
    for len in (0..=300usize).step_by(7) {
        if len as u64 > H::MAX_VALUE {
            continue;
        }
        let mut payload = [0u8; 300];
        for (i, b) in payload[..len].iter_mut().enumerate() {
            *b = (i * 13 + len) as u8;
        }
        let mut wire = [0u8; 320];
        let n = enc.encode(&payload[..len], &mut wire).unwrap_or(0);
        ok &= n == enc.encoded_len(len).unwrap_or(usize::MAX);
        // Byte at a time.
        let cuts: [usize; 320] = core::array::from_fn(|i| i);
        let r = run::<H>(Config::new(), &wire[..n], &cuts[..n]);
        ok &= r.frames == 1 && r.len == len && r.bytes[..len] == payload[..len];
    }
    t.check(name, ok);
}

fn vectors(t: &mut Tally) {
    type Go = BuffStreams<{ buffstreams_header_len(4096) }>;
    t.check(
        "buffstreams header width for 4096",
        buffstreams_header_len(4096) == 3,
    );
    t.check(
        "buffstreams 11",
        Go::emit(11).as_deref() == Some(&[0x16, 0, 0][..]),
    );
    t.check(
        "buffstreams 300",
        Go::emit(300).as_deref() == Some(&[0xd8, 0x04, 0][..]),
    );
    t.check(
        "buffstreams 4096",
        Go::emit(4096).as_deref() == Some(&[0x80, 0x40, 0][..]),
    );
    let mut d = Decoder::<Go, _>::new(Config::new(), [0u8; 8]);
    t.check(
        "buffstreams negative",
        d.feed(&[0x03, 0, 0]) == Err(DecodeError::NegativeLength),
    );
    t.check(
        "varint32 300",
        Varint32::emit(300).as_deref() == Some(&[0xac, 0x02][..]),
    );
    t.check(
        "varint32 127/128",
        Varint32::emit(127).as_deref() == Some(&[0x7f][..])
            && Varint32::emit(128).as_deref() == Some(&[0x80, 0x01][..]),
    );
    let mut d = Decoder::<Varint32, _>::new(Config::new(), [0u8; 8]);
    let f = d.feed(&[0x85, 0x00, 1, 2, 3, 4, 5]);
    t.check(
        "varint32 non-minimal 85 00 = 5",
        matches!(f, Ok(f) if f.event == Some(Event::Frame(&[1, 2, 3, 4, 5]))),
    );
    let mut d = Decoder::<Varint32, _>::new(Config::new(), [0u8; 8]);
    t.check(
        "varint32 5th byte over 0x0f",
        d.feed(&[0xff, 0xff, 0xff, 0xff, 0x10]) == Err(DecodeError::VarintOverflow),
    );
    t.check(
        "big endian 4",
        BigEndian::<4>::emit(0x0102_0304).as_deref() == Some(&[1, 2, 3, 4][..]),
    );
    t.check(
        "little endian 2",
        LittleEndian::<2>::emit(0x0102).as_deref() == Some(&[2, 1][..]),
    );
    t.check("big endian 1 max", BigEndian::<1>::emit(256).is_none());
}

/// 8-byte headers on a 32-bit `usize`: a length over 2^32 can never be taken modulo 2^32.
fn lengths_over_u32(t: &mut Tally) {
    t.check("usize is 32 bits here", usize::BITS == 32);
    let big: u64 = (1 << 32) + 5;
    let unlimited = Config::new().with_max_frame_len(usize::MAX);
    let mut d = Decoder::<BigEndian<8>, _>::new(unlimited, [0u8; 16]);
    let mut wire = [0u8; 13];
    wire[..8].copy_from_slice(&big.to_be_bytes());
    let r = d.feed(&wire);
    t.check(
        "BigEndian<8> 2^32+5 is too long, not 5",
        r == Err(DecodeError::FrameTooLong { len: big, max: 16 }),
    );
    // Skipping it is beyond the default skip limit (4 GiB - 1): an error, not a 5-byte frame.
    let skip = unlimited.with_oversize(Oversize::Skip);
    let mut d = Decoder::<LittleEndian<8>, _>::new(skip, [0u8; 16]);
    wire[..8].copy_from_slice(&big.to_le_bytes());
    let r = d.feed(&wire);
    t.check(
        "LittleEndian<8> 2^32+5 too long to skip, not a 5-byte frame",
        r == Err(DecodeError::TooLongToSkip {
            len: big,
            limit: u64::from(u32::MAX),
        }),
    );
    // With the limit raised, it is skipped whole.
    let mut d = Decoder::<LittleEndian<8>, _>::new(skip.with_max_skip_len(u64::MAX), [0u8; 16]);
    let r = d.feed(&wire);
    t.check(
        "LittleEndian<8> 2^32+5 skipped, not a 5-byte frame",
        matches!(r, Ok(f) if f.consumed == 13 && f.event.is_none()) && d.is_mid_frame(),
    );
    let mut d = Decoder::<Varint64, _>::new(unlimited, [0u8; 16]);
    let r = d.feed(&[0x80, 0x80, 0x80, 0x80, 0x20, 0]); // 2^33
    t.check(
        "Varint64 2^33 too long",
        r == Err(DecodeError::FrameTooLong {
            len: 1 << 33,
            max: 16,
        }),
    );
    let enc = Encoder::<BigEndian<8>>::new(unlimited);
    t.check(
        "encoder max is usize::MAX",
        enc.max_frame_len() == usize::MAX,
    );
    t.check(
        "encoder 8-byte header of 2^32-1",
        enc.header(u32::MAX as usize).as_deref() == Ok(&[0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff][..]),
    );
    let enc = Encoder::<BigEndian<8>>::new(unlimited.with_length_includes_header(true));
    // 2^32 - 1 payload bytes plus the 8-byte header: the field says 2^32 + 7, in 64 bits.
    t.check(
        "length counting the header is computed in 64 bits",
        enc.header(usize::MAX).as_deref() == Ok(&[0, 0, 0, 1, 0, 0, 0, 7][..]),
    );
}

fn oversize(t: &mut Tally) {
    let cfg = Config::new()
        .with_max_frame_len(2)
        .with_oversize(Oversize::Skip);
    let stream = [0, 5, 1, 2, 3, 4, 5, 0, 2, 9, 9];
    let r = run::<BigEndian<2>>(cfg, &stream, &[3]);
    t.check(
        "skip keeps sync",
        r.skipped == 1 && r.frames == 1 && r.bytes[..2] == [9, 9],
    );
    let r = run::<BigEndian<2>>(Config::new().with_max_frame_len(2), &stream, &[]);
    t.check(
        "reject",
        r.error == Some(DecodeError::FrameTooLong { len: 5, max: 2 }),
    );
}

fn decode_event_and_static(t: &mut Tally) {
    static DECODER: Decoder<BigEndian<2>, [u8; 32]> = Decoder::new(Config::new(), [0; 32]);
    t.check("const decoder", DECODER.max_frame_len() == 32);
    let mut d = Decoder::<BigEndian<2>, _>::new(Config::new(), [0u8; 32]);
    let ring = [0u8, 3, b'a', b'b', b'c', 0, 4, b'x'];
    let first = d.decode(&ring).ok();
    let ok = match first.and_then(|x| x.found).and_then(|f| d.event(&ring, f)) {
        Some(Event::Frame(f)) => f == b"abc",
        _ => false,
    };
    t.check("decode + event zero copy", ok);
    let rest = d.decode(&ring[5..]).ok();
    let tail = d.decode(b"yzw").ok();
    let ok = rest.is_some_and(|r| r.consumed == 3 && r.found.is_none())
        && match tail.and_then(|x| x.found).and_then(|f| d.event(b"yzw", f)) {
            Some(Event::Frame(f)) => f == b"xyzw",
            _ => false,
        };
    t.check("decode + event across a wrap", ok);
}

fn io_helpers(t: &mut Tally) {
    let mut wire = [0u8; 64];
    let mut w = FrameWriter::new(&mut wire[..], Encoder::<Varint32>::default(), [0u8; 16]);
    let ok =
        w.write_frame(b"hello").is_ok() && w.write_frame(&[7u8; 30]).is_ok() && w.flush().is_ok();
    t.check("FrameWriter", ok);
    let mut reader = FrameReader::new(
        &wire[..],
        Decoder::<Varint32, _>::new(Config::new(), [0u8; 64]),
        [0u8; 8],
    );
    let a = matches!(reader.read_frame(), Ok(Some(f)) if f == b"hello");
    let b = matches!(reader.read_frame(), Ok(Some(f)) if f == [7u8; 30]);
    t.check("FrameReader in 8-byte reads", a && b);
}

#[entry]
fn main() -> ! {
    let mut t = Tally {
        passed: 0,
        failed: 0,
    };
    vectors(&mut t);
    lengths_over_u32(&mut t);
    oversize(&mut t);
    decode_event_and_static(&mut t);
    io_helpers(&mut t);
    splits::<BigEndian<1>>(&mut t, "splits BigEndian<1>");
    splits::<BigEndian<4>>(&mut t, "splits BigEndian<4>");
    splits::<LittleEndian<3>>(&mut t, "splits LittleEndian<3>");
    splits::<BigEndian<8>>(&mut t, "splits BigEndian<8>");
    splits::<Varint32>(&mut t, "splits Varint32");
    splits::<Varint64>(&mut t, "splits Varint64");
    splits::<BuffStreams<3>>(&mut t, "splits BuffStreams<3>");
    roundtrip::<BigEndian<2>>(&mut t, "roundtrip BigEndian<2>");
    roundtrip::<LittleEndian<4>>(&mut t, "roundtrip LittleEndian<4>");
    roundtrip::<LittleEndian<8>>(&mut t, "roundtrip LittleEndian<8>");
    roundtrip::<Varint32>(&mut t, "roundtrip Varint32");
    roundtrip::<Varint64>(&mut t, "roundtrip Varint64");
    roundtrip::<BuffStreams<2>>(&mut t, "roundtrip BuffStreams<2>");
    roundtrip::<BuffStreams<4>>(&mut t, "roundtrip BuffStreams<4>");
    hprintln!(
        "framing on the emulated Cortex-M3: {} passed, {} failed",
        t.passed,
        t.failed
    );
    exit(t.failed == 0)
}

//! Go, standard library only: Go BuffStreams v2's framing (`binary.PutVarint` zero-padded to
//! the width BuffStreams derives from `MaxMessageSize`, read back with `binary.Varint`) for
//! several maximums, and `binary.PutUvarint` / `binary.ReadUvarint` framing (`Varint64`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use buffstreams_framing::{BuffStreams, Config, LengthPrefix, Varint64, buffstreams_header_len};

use crate::both::{Flavor, RawCase, agree, both_ways, cases};
use crate::harness::{Item, Peer, peers_dir, run, unavailable};

/// Payload lengths at the edges: empty, one byte, the varint boundaries of the zigzag
/// (BuffStreams) and plain encodings.
const EDGES: &[usize] = &[
    0, 1, 63, 64, 127, 128, 8_191, 8_192, 16_383, 16_384, 1_048_575, 1_048_576, 2_097_151,
    2_097_152,
];

fn sized(tag: &str, len: usize) -> Item {
    let seed = tag
        .bytes()
        .fold(0u8, |a, b| a.wrapping_mul(31).wrapping_add(b));
    Item::Frame((0..len).map(|j| seed.wrapping_add((j * 7) as u8)).collect())
}

fn payload(item: &Item) -> Vec<u8> {
    let Item::Frame(p) = item else {
        panic!("not a frame: {item:?}")
    };
    p.clone()
}

fn item(frame: &[u8]) -> Item {
    Item::Frame(frame.to_vec())
}

/// The Go peer, built once per test run.
fn go(format: &str, max: usize, non_minimal_header: &[u8]) -> Option<Flavor> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("go-peer");
        run(Command::new("go")
            .arg("build")
            .arg("-o")
            .arg(&out)
            .arg(peers_dir().join("peer.go")))
        .map(|_| out)
    });
    match built {
        Ok(program) => Some(Flavor {
            peer: Peer::new(&format!("go {format} (max {max})"), program, &[]),
            args: vec![
                "-format".into(),
                format.into(),
                "-max".into(),
                max.to_string(),
            ],
            sized,
            payload,
            item,
            non_minimal: (
                [non_minimal_header, b"abcde"].concat(),
                Item::Frame(b"abcde".to_vec()),
            ),
        }),
        Err(e) => unavailable(
            "go",
            &format!("cannot build examples/peers/peer.go (Debian golang-go): {e}"),
        ),
    }
}

/// BuffStreams with `MaxMessageSize` = `MAX`, header `H` (its width from `MAX`).
fn buffstreams<const MAX: usize, H: LengthPrefix + Send + 'static>() {
    assert_eq!(H::MAX_HEADER_LEN, buffstreams_header_len(MAX));
    // 5 is 0a in zigzag; written as 8a 00 and zero-padded to the header width.
    let mut non_minimal = vec![0x8a, 0x00];
    non_minimal.resize(H::MAX_HEADER_LEN, 0);
    let Some(go) = go("buffstreams", MAX, &non_minimal) else {
        return;
    };
    let edges: Vec<usize> = EDGES.iter().copied().chain([MAX - 1, MAX]).collect();
    both_ways::<H>(&go, MAX, &cases(&go, &edges, MAX));
}

#[test]
fn go_buffstreams_max_255() {
    buffstreams::<255, BuffStreams<{ buffstreams_header_len(255) }>>();
}

#[test]
fn go_buffstreams_max_4096() {
    buffstreams::<4096, BuffStreams<{ buffstreams_header_len(4096) }>>();
}

#[test]
fn go_buffstreams_max_65536() {
    buffstreams::<65536, BuffStreams<{ buffstreams_header_len(65536) }>>();
}

#[test]
fn go_buffstreams_max_2100000() {
    buffstreams::<2_100_000, BuffStreams<{ buffstreams_header_len(2_100_000) }>>();
}

#[test]
fn go_uvarint_both_ways() {
    const MAX: usize = 2_100_000;
    let Some(go) = go("uvarint", MAX, &[0x85, 0x00]) else {
        return;
    };
    let edges: Vec<usize> = EDGES.iter().copied().chain([MAX - 1, MAX]).collect();
    both_ways::<Varint64>(&go, MAX, &cases(&go, &edges, MAX));
}

fn frame(p: &[u8]) -> Item {
    Item::Frame(p.to_vec())
}

fn err() -> Item {
    Item::Error(String::new())
}

#[test]
fn go_reads_hostile_buffstreams_streams_as_we_do() {
    const MAX: usize = 4096;
    type H = BuffStreams<{ buffstreams_header_len(MAX) }>;
    let Some(go) = go("buffstreams", MAX, &[0x8a, 0x00, 0x00]) else {
        return;
    };
    let over = H::emit(MAX as u64 + 1).unwrap();
    let with = |header: &[u8], body: &[u8]| [header, body].concat();
    let cases = vec![
        RawCase {
            name: "a non-minimal varint (8a 00 00)",
            bytes: with(&[0x8a, 0x00, 0x00], b"abcde"),
            ours: vec![frame(b"abcde"), Item::End],
            differs: vec![],
        },
        RawCase {
            // binary.Varint stops at the varint's last byte; what follows is padding.
            name: "padding that is not zero (0a ff ff)",
            bytes: with(&[0x0a, 0xff, 0xff], b"abcde"),
            ours: vec![frame(b"abcde"), Item::End],
            differs: vec![],
        },
        RawCase {
            name: "an empty message",
            bytes: vec![0, 0, 0],
            ours: vec![frame(b""), Item::End],
            differs: vec![],
        },
        RawCase {
            name: "a negative length (01 00 00 is -1)",
            bytes: vec![0x01, 0x00, 0x00],
            ours: vec![err()],
            differs: vec![],
        },
        RawCase {
            name: "a varint that does not end inside the header (80 80 80)",
            bytes: with(&[0x80, 0x80, 0x80], b"abcde"),
            ours: vec![err()],
            differs: vec![],
        },
        RawCase {
            name: "the stream ends inside a header",
            bytes: vec![0x0a, 0x00],
            ours: vec![err()],
            differs: vec![],
        },
        RawCase {
            name: "the stream ends inside a message",
            bytes: with(&[0x0a, 0x00, 0x00], b"ab"),
            ours: vec![err()],
            differs: vec![],
        },
        RawCase {
            name: "one byte over MaxMessageSize",
            bytes: with(&over, &vec![1u8; MAX + 1]),
            ours: vec![err()],
            differs: vec![],
        },
    ];
    agree::<H>(&go, Config::new().with_max_frame_len(MAX), &cases);
}

#[test]
fn go_reads_hostile_uvarint_streams_as_we_do() {
    const MAX: usize = 4096;
    let Some(go) = go("uvarint", MAX, &[0x85, 0x00]) else {
        return;
    };
    let with = |header: &[u8], body: &[u8]| [header, body].concat();
    let cases = vec![
        RawCase {
            name: "a non-minimal varint (85 00)",
            bytes: with(&[0x85, 0x00], b"abcde"),
            ours: vec![frame(b"abcde"), Item::End],
            differs: vec![],
        },
        RawCase {
            name: "a 10th varint byte above 1 (beyond 64 bits)",
            bytes: [vec![0xff; 9], vec![0x02]].concat(),
            ours: vec![err()],
            differs: vec![],
        },
        RawCase {
            name: "a varint of 11 bytes",
            bytes: [vec![0x80; 10], vec![0x00]].concat(),
            ours: vec![err()],
            differs: vec![],
        },
        RawCase {
            // Go 1.19's binary.ReadUvarint (Debian bookworm's Go) returns io.EOF, not
            // io.ErrUnexpectedEOF, for a stream cut inside a varint: a Go reader that takes
            // io.EOF for a clean end, as the documentation suggests, drops the cut frame
            // without a word.
            name: "the stream ends inside a header",
            bytes: vec![0x80],
            ours: vec![err()],
            differs: vec![("go", vec![Item::End])],
        },
        RawCase {
            name: "one byte over the maximum",
            bytes: with(&[0x81, 0x20], &vec![1u8; MAX + 1]),
            ours: vec![err()],
            differs: vec![],
        },
    ];
    agree::<Varint64>(&go, Config::new().with_max_frame_len(MAX), &cases);
}

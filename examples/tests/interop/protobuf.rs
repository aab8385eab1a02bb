//! Python and Java protobuf, `Varint32` (what `writeDelimitedTo` / `parseDelimitedFrom` speak):
//! `google.protobuf.Any` messages, every field checked on both sides.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use buffstreams_framing::{Config, Varint32};
use prost::Message;

use crate::both::{Flavor, RawCase, agree, both_ways, cases};
use crate::harness::{Item, Peer, peers_dir, run, unavailable};

/// `google.protobuf.Any`, field for field.
#[derive(Clone, PartialEq, Message)]
struct Any {
    #[prost(string, tag = "1")]
    type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    value: Vec<u8>,
}

/// The largest message of the runs: above the third varint boundary (2,097,152).
const MAX: usize = 2_100_000;

/// Message lengths at the edges: empty, the varint boundaries, the maximum.
const EDGES: &[usize] = &[
    0,
    3,
    127,
    128,
    16_383,
    16_384,
    2_097_151,
    2_097_152,
    MAX - 1,
    MAX,
];

fn varint_len(n: usize) -> usize {
    (1..=10).find(|k| n >> (7 * k) == 0).unwrap()
}

/// A field of `n` bytes on the wire (proto3 leaves an empty one out).
fn field_len(n: usize) -> usize {
    if n == 0 { 0 } else { 1 + varint_len(n) + n }
}

/// An `Any` named `tag` whose encoding is exactly `len` bytes (the type URL grows or shrinks
/// when a value length cannot land on it; 1 and 2 bytes are impossible and panic).
fn sized(tag: &str, len: usize) -> Item {
    let urls = (0..4).map(|pad| format!("{tag}{}", "x".repeat(pad)));
    for url in urls.chain((0..8).map(|n| "u".repeat(n))) {
        let Some(rest) = len.checked_sub(field_len(url.len())) else {
            continue;
        };
        let n = (1..=5)
            .filter_map(|k| rest.checked_sub(1 + k))
            .find(|&n| n > 0 && field_len(n) == rest)
            .or((rest == 0).then_some(0));
        if let Some(n) = n {
            let seed = tag
                .bytes()
                .fold(0u8, |a, b| a.wrapping_mul(31).wrapping_add(b));
            let value = (0..n).map(|j| seed.wrapping_add((j * 7) as u8)).collect();
            return Item::Msg { url, value };
        }
    }
    panic!("no Any is {len} bytes long");
}

fn payload(item: &Item) -> Vec<u8> {
    let Item::Msg { url, value } = item else {
        panic!("not a message: {item:?}")
    };
    Any {
        type_url: url.clone(),
        value: value.clone(),
    }
    .encode_to_vec()
}

fn item(frame: &[u8]) -> Item {
    match Any::decode(frame) {
        Ok(m) => Item::Msg {
            url: m.type_url,
            value: m.value,
        },
        Err(e) => Item::Error(format!("parse: {e}")),
    }
}

fn flavor(peer: Peer, args: &[&str]) -> Flavor {
    // Any { type_url: "abc" } is `0a 03 61 62 63`: five bytes, declared as `85 00`.
    let abc = Item::Msg {
        url: "abc".into(),
        value: Vec::new(),
    };
    let mut non_minimal = vec![0x85, 0x00];
    non_minimal.extend(payload(&abc));
    Flavor {
        peer,
        args: args.iter().map(|a| a.to_string()).collect(),
        sized,
        payload,
        item,
        non_minimal: (non_minimal, abc),
    }
}

/// Python with protobuf: Debian's `python3-protobuf` goes with `/usr/bin/python3`, which a
/// `python3` earlier on the PATH (pyenv) may not see.
fn python() -> Option<Flavor> {
    let script = peers_dir().join("peer.py");
    for python in ["/usr/bin/python3", "python3"] {
        if run(Command::new(python).args(["-c", "import google.protobuf"])).is_ok() {
            let peer = Peer::new("python protobuf", python, &[script.to_str().unwrap()]);
            return Some(flavor(peer, &[]));
        }
    }
    unavailable(
        "python",
        "no python3 with google.protobuf (Debian python3-protobuf)",
    )
}

/// Java with protobuf-java (Debian `libprotobuf-java`; `BUFFSTREAMS_PROTOBUF_JAR` overrides
/// where its jar is), compiled once per test run.
fn java() -> Option<Flavor> {
    static BUILT: OnceLock<Result<(PathBuf, PathBuf), String>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let jar = std::env::var_os("BUFFSTREAMS_PROTOBUF_JAR").map_or_else(
            || PathBuf::from("/usr/share/java/protobuf.jar"),
            PathBuf::from,
        );
        if !jar.exists() {
            return Err(format!(
                "{} is missing (Debian libprotobuf-java)",
                jar.display()
            ));
        }
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("java-peer");
        run(Command::new("javac")
            .arg("-cp")
            .arg(&jar)
            .arg("-d")
            .arg(&out)
            .arg(peers_dir().join("Peer.java")))?;
        Ok((jar, out))
    });
    match built {
        Ok((jar, classes)) => {
            let cp = format!("{}:{}", jar.display(), classes.display());
            let peer = Peer::new("java protobuf", "java", &["-cp", &cp, "Peer"]);
            Some(flavor(peer, &[]))
        }
        Err(e) => unavailable("java", e),
    }
}

fn msg(url: &str, value: &[u8]) -> Item {
    Item::Msg {
        url: url.into(),
        value: value.into(),
    }
}

fn err() -> Item {
    Item::Error(String::new())
}

/// The hand-made streams; `max` is what the Python reader is given (Java has no maximum).
fn hostile(max: usize) -> Vec<RawCase> {
    let abc = payload(&msg("abc", b""));
    let with = |header: &[u8], body: &[u8]| [header, body].concat();
    let over = payload(&sized("over", max + 1));
    let mut over_header = Vec::new();
    prost::encoding::encode_varint(over.len() as u64, &mut over_header);
    vec![
        RawCase {
            name: "a non-minimal varint (85 00)",
            bytes: with(&[0x85, 0x00], &abc),
            ours: vec![msg("abc", b""), Item::End],
            differs: vec![],
        },
        RawCase {
            name: "an empty message",
            bytes: vec![0x00],
            ours: vec![msg("", b""), Item::End],
            differs: vec![],
        },
        RawCase {
            name: "the stream ends inside a header",
            bytes: with(&abc_frame(), &[0x80]),
            ours: vec![msg("abc", b""), err()],
            differs: vec![],
        },
        RawCase {
            name: "the stream ends inside a message",
            bytes: with(&[0x05], &abc[..3]),
            ours: vec![err()],
            differs: vec![],
        },
        RawCase {
            // 2^32: beyond 32 bits. protobuf's 32-bit varint readers keep the low 32 bits (0).
            name: "a 5th varint byte above 0x0f (80 80 80 80 10)",
            bytes: vec![0x80, 0x80, 0x80, 0x80, 0x10],
            ours: vec![err()],
            differs: vec![
                ("python", vec![msg("", b""), Item::End]),
                ("java", vec![msg("", b""), Item::End]),
            ],
        },
        RawCase {
            name: "a varint of 11 bytes",
            bytes: [vec![0xff; 10], vec![0x01]].concat(),
            ours: vec![err()],
            differs: vec![],
        },
        RawCase {
            // protobuf-java reads it as the int -1, and parseDelimitedFrom then parses an
            // empty message from a stream limited to -1 bytes.
            name: "the largest 32-bit length (ff ff ff ff 0f)",
            bytes: vec![0xff, 0xff, 0xff, 0xff, 0x0f],
            ours: vec![err()],
            differs: vec![("java", vec![msg("", b""), Item::End])],
        },
        RawCase {
            // protobuf-java's parseDelimitedFrom has no limit of its own below 2 GiB.
            name: "one byte over the maximum",
            bytes: with(&over_header, &over),
            ours: vec![err()],
            differs: vec![("java", vec![item(&over), Item::End])],
        },
    ]
}

fn abc_frame() -> Vec<u8> {
    let abc = payload(&msg("abc", b""));
    [vec![abc.len() as u8], abc].concat()
}

#[test]
fn python_both_ways() {
    let Some(python) = python() else { return };
    both_ways::<Varint32>(&python, MAX, &cases(&python, EDGES, MAX));
}

#[test]
fn python_reads_hostile_streams_as_we_do() {
    let Some(mut python) = python() else { return };
    let max = 1000;
    python.args = vec!["--max".into(), max.to_string()];
    agree::<Varint32>(
        &python,
        Config::new().with_max_frame_len(max),
        &hostile(max),
    );
}

#[test]
fn java_both_ways() {
    let Some(java) = java() else { return };
    both_ways::<Varint32>(&java, MAX, &cases(&java, EDGES, MAX));
}

#[test]
fn java_reads_hostile_streams_as_we_do() {
    let Some(java) = java() else { return };
    let max = 1000;
    agree::<Varint32>(&java, Config::new().with_max_frame_len(max), &hostile(max));
}

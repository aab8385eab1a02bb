//! The checks every peer goes through, for any header format: the bytes it writes against
//! ours, its stream into our `Listener` (with the edge cases), our `Writer`'s stream into its
//! reader, and hand-made streams read by both sides.

use std::io::Cursor;
use std::sync::mpsc;
use std::time::Duration;

use buffstreams_framing::{Config, Decoder, Encoder, FrameReader, LengthPrefix, ReadError};
use buffstreams_transport_std::{Error, Listener, ListenerConfig, Writer, WriterConfig};
use embedded_io_adapters::std::FromStd;

use crate::harness::{Item, Peer, same_bytes, same_items};

const LONG: Duration = Duration::from_secs(60);

/// How one peer's messages map to frames.
pub struct Flavor {
    /// The peer, as it is started (before `write` / `read`) and its extra arguments.
    pub peer: Peer,
    pub args: Vec<String>,
    /// A message whose frame payload is exactly `len` bytes, named `tag`.
    pub sized: fn(tag: &str, len: usize) -> Item,
    /// A message's frame payload.
    pub payload: fn(&Item) -> Vec<u8>,
    /// A frame payload as the peer reports it.
    pub item: fn(&[u8]) -> Item,
    /// A non-minimal header (`85 00` or the like) followed by its payload, and what it reads as.
    pub non_minimal: (Vec<u8>, Item),
}

impl Flavor {
    fn args(&self) -> Vec<&str> {
        self.args.iter().map(String::as_str).collect()
    }
}

/// The messages of a run: one per length in `lengths` (which holds the edges), then lengths
/// spread over the whole range.
pub fn cases(flavor: &Flavor, lengths: &[usize], max: usize) -> Vec<Item> {
    let mut all: Vec<usize> = lengths.iter().copied().filter(|&l| l <= max).collect();
    all.extend((0..100).map(|i| (i * 997 + 5) % (max.min(20_000) + 1)));
    all.iter()
        .enumerate()
        .map(|(i, &len)| (flavor.sized)(&format!("c/{i}"), len))
        .collect()
}

/// Our frames for `payloads`, header and payload.
fn our_bytes<H: LengthPrefix>(config: Config, payloads: &[Vec<u8>]) -> Vec<u8> {
    let encoder = Encoder::<H>::new(config);
    let mut out = Vec::new();
    for p in payloads {
        out.extend_from_slice(&encoder.header(p.len()).unwrap());
        out.extend_from_slice(p);
    }
    out
}

/// The peer's and our framing of the same messages, byte for byte; the peer's stream into our
/// `Listener<H>` with the edge cases; our `Writer<H>` into the peer's reader.
pub fn both_ways<H: LengthPrefix + Send + 'static>(flavor: &Flavor, max: usize, cases: &[Item]) {
    let name = &flavor.peer.name;
    let args = flavor.args();
    let config = Config::new().with_max_frame_len(max);
    let payloads: Vec<Vec<u8>> = cases.iter().map(flavor.payload).collect();
    let lens: Vec<usize> = payloads.iter().map(Vec::len).collect();
    eprintln!("{name}: {} messages of {lens:?} bytes", cases.len());

    // 1. The same messages framed by the peer and by us: the same bytes.
    let theirs = flavor.peer.capture(cases, &args);
    same_bytes(
        &format!("{name}: the stream it writes, max {max}"),
        &theirs,
        &our_bytes::<H>(config, &payloads),
    );

    // 2. The peer into our Listener.
    let (tx, rx) = mpsc::channel();
    let server = Listener::<H>::bind("127.0.0.1:0", ListenerConfig::new().with_framing(config))
        .unwrap()
        .spawn(move |m| Ok(tx.send(m.to_vec())?))
        .unwrap();
    let addr = server.local_addr();
    let take = |n: usize, what: &str| -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| {
                rx.recv_timeout(LONG).unwrap_or_else(|_| {
                    panic!("{name} -> Listener: {what}: message {i} of {n} missing")
                })
            })
            .collect()
    };
    // a. Every case, a non-minimal header, one byte over the maximum (the Listener closes
    //    the connection), and a message after it that must not arrive.
    let oversize = (flavor.sized)("oversize", max + 1);
    let mut a = cases.to_vec();
    a.push(Item::Raw(flavor.non_minimal.0.clone()));
    a.push(oversize);
    a.push((flavor.sized)("after", 5.min(max)));
    let last = flavor.peer.write(addr, &a, &args);
    if let Some(done) = last.strip_prefix("error after ") {
        // The Listener closed the connection at the oversize header; the peer's later
        // writes may fail.
        let done: usize = done.split(':').next().unwrap().parse().unwrap();
        assert!(done > cases.len(), "{name} -> Listener: {last}");
    } else {
        assert_eq!(last, format!("wrote {}", a.len()), "{name} -> Listener");
    }
    let got = take(cases.len() + 1, "cases");
    for (i, (got, want)) in got.iter().zip(&payloads).enumerate() {
        same_bytes(
            &format!("{name} -> Listener, max {max}: message {i}"),
            got,
            want,
        );
    }
    assert_eq!(
        (flavor.item)(&got[cases.len()]),
        flavor.non_minimal.1,
        "{name} -> Listener: the message after a non-minimal header"
    );
    // b. Another connection, served after the oversize one was closed.
    let other = (flavor.sized)("other", 7.min(max));
    assert!(
        flavor
            .peer
            .write(addr, std::slice::from_ref(&other), &args)
            .starts_with("wrote ")
    );
    let got = take(1, "the other connection");
    same_bytes(
        &format!("{name} -> Listener: other connection"),
        &got[0],
        &(flavor.payload)(&other),
    );
    // c. A connection that ends in the middle of a frame: what came before it arrives.
    let before = (flavor.sized)("before-cut", 3.min(max));
    let cut_len = max.min(1000);
    let mut cut = Encoder::<H>::new(config).header(cut_len).unwrap().to_vec();
    cut.extend(vec![7u8; cut_len / 2]);
    assert!(
        flavor
            .peer
            .write(addr, &[before.clone(), Item::Raw(cut)], &args)
            .starts_with("wrote ")
    );
    let got = take(1, "the connection cut mid-frame");
    same_bytes(
        &format!("{name} -> Listener: before the cut"),
        &got[0],
        &(flavor.payload)(&before),
    );
    let stats = server.shutdown();
    assert!(
        rx.try_recv().is_err(),
        "{name} -> Listener: a message arrived after the oversize frame"
    );
    assert_eq!(stats.protocol_errors, 1, "{name} -> Listener: {stats:?}");
    assert_eq!(stats.truncated, 1, "{name} -> Listener: {stats:?}");
    assert_eq!(
        stats.messages_in,
        cases.len() as u64 + 3,
        "{name} -> Listener: {stats:?}"
    );

    // 3. Our Writer into the peer's reader.
    let reading = flavor.peer.read(&args);
    let writer = Writer::<H>::dial(reading.addr, WriterConfig::new().with_framing(config)).unwrap();
    for p in &payloads {
        writer.write(p).unwrap();
    }
    assert!(
        matches!(writer.write(&vec![0u8; max + 1]), Err(Error::Encode(_))),
        "Writer -> {name}: a message over the maximum was accepted"
    );
    let stats = writer.close();
    assert_eq!(
        stats.messages_out,
        cases.len() as u64,
        "Writer -> {name}: {stats:?}"
    );
    let mut want = cases.to_vec();
    want.push(Item::End);
    same_items(
        &format!("Writer -> {name}, max {max}"),
        &reading.finish(),
        &want,
    );
}

/// What our decoder reads from `bytes`, as the peers report it.
pub fn ours<H: LengthPrefix>(config: Config, bytes: &[u8], item: fn(&[u8]) -> Item) -> Vec<Item> {
    let decoder = Decoder::<H, _>::new(config, Vec::new());
    let mut reader = FrameReader::new(FromStd::new(Cursor::new(bytes)), decoder, [0u8; 4096]);
    let mut items = Vec::new();
    loop {
        match reader.read_frame() {
            Ok(Some(frame)) => items.push(item(frame)),
            Ok(None) => break items.push(Item::End),
            Err(e @ (ReadError::Decode(_) | ReadError::UnexpectedEof)) => {
                break items.push(Item::Error(format!("{e:?}")));
            }
            Err(e) => panic!("reading from memory: {e:?}"),
        }
    }
    items
}

/// A hand-made stream, what we read from it, and where a peer reads it otherwise.
pub struct RawCase {
    pub name: &'static str,
    pub bytes: Vec<u8>,
    /// What our decoder must read.
    pub ours: Vec<Item>,
    /// Peers that read it differently (by name), and what they read.
    pub differs: Vec<(&'static str, Vec<Item>)>,
}

/// Every hand-made stream, read by us and by the peer (sent over a socket as is).
pub fn agree<H: LengthPrefix>(flavor: &Flavor, config: Config, raw: &[RawCase]) {
    let name = &flavor.peer.name;
    for case in raw {
        let us = ours::<H>(config, &case.bytes, flavor.item);
        same_items(&format!("our decoder on {}", case.name), &us, &case.ours);
        let them = flavor.peer.read_raw(&case.bytes, &flavor.args());
        let want = case
            .differs
            .iter()
            .find(|(peer, _)| name.starts_with(peer))
            .map_or(&case.ours, |(_, theirs)| theirs);
        same_items(&format!("{name} on {}", case.name), &them, want);
    }
}

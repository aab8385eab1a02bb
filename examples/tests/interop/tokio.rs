//! transport-std's `Listener` and `Writer` against tokio-util's `LengthDelimitedCodec` over real
//! tokio sockets on 127.0.0.1: every header width tokio-util has, both byte orders, and the
//! length counting the header (`length_adjustment`), with the edge cases: an empty payload,
//! one byte, the largest allowed frame, and one byte over it (refused on both sides, the
//! listener's other connections unaffected), and a connection cut in the middle of a frame. A
//! failure names the case and the first byte that differs.

use std::sync::mpsc;
use std::time::Duration;

use buffstreams_framing::{Decoder, FrameReader};
use buffstreams_transport_std::{
    BigEndian, Config, Error, LengthPrefix, Listener, ListenerConfig, LittleEndian, Writer,
    WriterConfig,
};
use bytes::Bytes;
use embedded_io_adapters::std::FromStd;
use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use crate::common::runtime;
use crate::harness::{ran, same_bytes};
use tokio_util::codec::{FramedRead, FramedWrite, LengthDelimitedCodec};

const LONG: Duration = Duration::from_secs(30);

/// The messages of every case: the edges first, then sizes across the range.
fn messages(max: usize) -> Vec<Vec<u8>> {
    let mut sizes = vec![0, 1, max - 1, max];
    sizes.extend((0..200).map(|i| (i * 97) % (max + 1)));
    sizes
        .into_iter()
        .enumerate()
        .map(|(i, len)| (0..len).map(|j| (i * 31 + j * 7) as u8).collect())
        .collect()
}

/// One case: tokio-util into our `Listener<H>`, then our `Writer<H>` into tokio-util.
fn case<H: LengthPrefix + Send + 'static>(width: usize, little: bool, includes_header: bool) {
    // One below what the header can express, so that one byte over the maximum can be sent.
    let max = usize::try_from(H::MAX_VALUE)
        .unwrap_or(usize::MAX)
        .saturating_sub(if includes_header { width } else { 0 })
        .saturating_sub(1)
        .min(1000);
    let name = format!(
        "width {width}, {}, length {} the header, max {max}",
        if little {
            "little-endian"
        } else {
            "big-endian"
        },
        if includes_header {
            "counting"
        } else {
            "without"
        }
    );
    let codec = move || {
        let mut b = LengthDelimitedCodec::builder();
        // tokio-util checks its maximum against the length field itself, which counts the
        // header when `length_adjustment` says so.
        let field_max = max + 1 + if includes_header { width } else { 0 };
        b.length_field_length(width).max_frame_length(field_max);
        if little {
            b.little_endian();
        }
        if includes_header {
            b.length_adjustment(-(width as isize));
        }
        b.new_codec()
    };
    let framing = Config::new()
        .with_max_frame_len(max)
        .with_length_includes_header(includes_header);
    let want = messages(max);
    let rt = runtime();

    // tokio-util → Listener<H>; then one frame over the maximum on that connection, while a
    // second connection keeps going.
    let (tx, rx) = mpsc::channel();
    let listener =
        Listener::<H>::bind("127.0.0.1:0", ListenerConfig::new().with_framing(framing)).unwrap();
    let server = listener
        .spawn_with_reply(move |m, conn| Ok(tx.send((conn.peer_addr(), m.to_vec()))?))
        .unwrap();
    let addr = server.local_addr();
    let (first, second) = rt.block_on(async {
        let a = TcpStream::connect(addr).await.unwrap();
        let b = TcpStream::connect(addr).await.unwrap();
        let (first, second) = (a.local_addr().unwrap(), b.local_addr().unwrap());
        let mut a = FramedWrite::new(a, codec());
        for m in &want {
            a.send(Bytes::from(m.clone())).await.unwrap();
        }
        a.send(Bytes::from(vec![9u8; max + 1])).await.unwrap();
        a.send(Bytes::from_static(b"after the oversize frame"))
            .await
            .unwrap();
        let mut b = FramedWrite::new(b, codec());
        b.send(Bytes::from_static(b"other connection"))
            .await
            .unwrap();
        SinkExt::<Bytes>::close(&mut a).await.unwrap();
        SinkExt::<Bytes>::close(&mut b).await.unwrap();
        (first, second)
    });
    let mut from_first = Vec::new();
    let mut from_second = Vec::new();
    while from_first.len() < want.len() || from_second.is_empty() {
        let (peer, m) = rx
            .recv_timeout(LONG)
            .unwrap_or_else(|_| panic!("{name}: tokio-util -> Listener: messages missing"));
        if peer == first {
            from_first.push(m);
        } else {
            assert_eq!(peer, second, "{name}");
            from_second.push(m);
        }
    }
    for (i, (got, want)) in from_first.iter().zip(&want).enumerate() {
        same_bytes(
            &format!("{name}, tokio-util -> Listener: message {i}"),
            got,
            want,
        );
    }
    assert_eq!(from_second, [b"other connection".to_vec()], "{name}");
    let stats = server.shutdown();
    assert!(
        rx.try_iter().next().is_none(),
        "{name}: something after the oversize frame was delivered"
    );
    assert_eq!(stats.protocol_errors, 1, "{name}: {stats:?}");
    assert_eq!(
        stats.messages_in,
        want.len() as u64 + 1,
        "{name}: {stats:?}"
    );

    // Writer<H> → tokio-util.
    let tcp = rt.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = tcp.local_addr().unwrap();
    let reader = rt.spawn(async move {
        let (stream, _) = tcp.accept().await.unwrap();
        let mut frames = FramedRead::new(stream, codec());
        let mut got = Vec::new();
        while let Some(frame) = frames.next().await {
            got.push(frame.unwrap().to_vec());
        }
        got
    });
    let writer = Writer::<H>::dial(addr, WriterConfig::new().with_framing(framing)).unwrap();
    for m in &want {
        writer.write(m).unwrap();
    }
    assert!(
        matches!(writer.write(&vec![9u8; max + 1]), Err(Error::Encode(_))),
        "{name}: the Writer accepted a message over the maximum"
    );
    let stats = writer.close();
    assert_eq!(stats.messages_out, want.len() as u64, "{name}");
    let got = rt.block_on(reader).unwrap();
    assert_eq!(got.len(), want.len(), "{name}: Writer -> tokio-util");
    for (i, (got, want)) in got.iter().zip(&want).enumerate() {
        same_bytes(
            &format!("{name}, Writer -> tokio-util: message {i}"),
            got,
            want,
        );
    }
    ran(&format!("tokio-util {name}"));
}

#[test]
fn big_endian_every_width() {
    case::<BigEndian<1>>(1, false, false);
    case::<BigEndian<2>>(2, false, false);
    case::<BigEndian<3>>(3, false, false);
    case::<BigEndian<4>>(4, false, false);
    case::<BigEndian<8>>(8, false, false);
}

#[test]
fn little_endian_every_width() {
    case::<LittleEndian<1>>(1, true, false);
    case::<LittleEndian<2>>(2, true, false);
    case::<LittleEndian<3>>(3, true, false);
    case::<LittleEndian<4>>(4, true, false);
    case::<LittleEndian<8>>(8, true, false);
}

#[test]
fn length_counting_the_header() {
    case::<BigEndian<1>>(1, false, true);
    case::<BigEndian<2>>(2, false, true);
    case::<BigEndian<4>>(4, false, true);
    case::<LittleEndian<4>>(4, true, true);
    case::<BigEndian<8>>(8, false, true);
}

/// A tokio-util connection cut in the middle of a frame: our `Listener` delivers what came
/// before and counts the cut frame as truncated; tokio-util reading the same cut stream stops
/// with an error where our decoder does.
#[test]
fn cut_mid_frame() {
    let rt = runtime();
    let (tx, rx) = mpsc::channel();
    let server = Listener::<BigEndian<4>>::bind("127.0.0.1:0", ListenerConfig::new())
        .unwrap()
        .spawn(move |m| Ok(tx.send(m.to_vec())?))
        .unwrap();
    let addr = server.local_addr();
    let cut: &[u8] = &[0, 0, 0, 10, 1, 2, 3];
    rt.block_on(async {
        let mut framed = FramedWrite::new(
            TcpStream::connect(addr).await.unwrap(),
            LengthDelimitedCodec::new(),
        );
        framed
            .send(Bytes::from_static(b"before the cut"))
            .await
            .unwrap();
        let stream = framed.get_mut();
        stream.write_all(cut).await.unwrap();
        stream.shutdown().await.unwrap();
    });
    assert_eq!(rx.recv_timeout(LONG).unwrap(), b"before the cut");
    let stats = server.shutdown();
    assert_eq!((stats.messages_in, stats.truncated), (1, 1), "{stats:?}");

    // The same bytes read by tokio-util and by our decoder.
    let mut bytes = vec![0, 0, 0, 2, b'o', b'k'];
    bytes.extend_from_slice(cut);
    let tcp = rt.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = tcp.local_addr().unwrap();
    let theirs = rt.block_on(async {
        let sent = bytes.clone();
        tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(&sent).await.unwrap();
            s.shutdown().await.unwrap();
        });
        let (stream, _) = tcp.accept().await.unwrap();
        let mut frames = FramedRead::new(stream, LengthDelimitedCodec::new());
        let mut got = Vec::new();
        while let Some(frame) = frames.next().await {
            got.push(frame.map(|f| f.to_vec()).map_err(|_| ()));
        }
        got
    });
    assert_eq!(
        theirs,
        [Ok(b"ok".to_vec()), Err(())],
        "tokio-util on a cut stream"
    );
    let decoder = Decoder::<BigEndian<4>, _>::new(Config::new(), Vec::new());
    let mut ours = FrameReader::new(FromStd::new(&bytes[..]), decoder, [0u8; 64]);
    assert_eq!(ours.read_frame().unwrap(), Some(&b"ok"[..]));
    assert!(ours.read_frame().is_err(), "our decoder on a cut stream");
}

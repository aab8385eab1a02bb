//! The framing crate's async reader and writer on tokio (through `embedded-io-adapters`),
//! over real sockets on 127.0.0.1, against transport-std's `Listener` and `Writer` and against
//! tokio-util's `LengthDelimitedCodec`: every byte checked, every header width tokio-util has,
//! both byte orders, and the typed errors a hostile peer gets.

mod common;

use std::sync::mpsc;
use std::time::Duration;

use buffstreams_framing::{
    AsyncFrameReader, AsyncFrameWriter, BigEndian, Config, DecodeError, Decoder, Encoder,
    LengthPrefix, LittleEndian, ReadError,
};
use buffstreams_transport_std::{Listener, ListenerConfig, Writer, WriterConfig};
use bytes::Bytes;
use common::runtime;
use embedded_io_adapters::tokio_1::FromTokio;
use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::{FramedRead, FramedWrite, LengthDelimitedCodec};

const LONG: Duration = Duration::from_secs(30);
const COUNT: u32 = 5_000;

/// Message `i`: 0 to `max` bytes, every byte depending on `i` and its position.
fn message(i: u32, max: usize) -> Vec<u8> {
    let len = (i as usize * 37) % (max + 1);
    (0..len).map(|j| (i as usize * 131 + j) as u8).collect()
}

/// Frames over a tokio socket in, as many as `COUNT`, each checked; `Err` at the first
/// difference, naming the message.
async fn read_all<H: LengthPrefix>(stream: TcpStream, max: usize) -> Result<u32, String> {
    let decoder = Decoder::<H, _>::new(Config::new().with_max_frame_len(max), Vec::new());
    let mut reader = AsyncFrameReader::new(FromTokio::new(stream), decoder, vec![0u8; 16 * 1024]);
    let mut i = 0;
    while let Some(frame) = reader.read_frame().await.map_err(|e| format!("{e}"))? {
        if frame != message(i, max) {
            return Err(format!("message {i} differs"));
        }
        i += 1;
    }
    Ok(i)
}

#[test]
fn our_async_writer_on_tokio_into_a_transport_std_listener() {
    let (tx, rx) = mpsc::channel();
    let config = ListenerConfig::new().with_max_frame_len(300);
    let listener: Listener = Listener::bind("127.0.0.1:0", config).unwrap();
    let server = listener
        .spawn(move |m: &[u8]| Ok(tx.send(m.to_vec())?))
        .unwrap();
    let addr = server.local_addr();
    runtime().block_on(async {
        let stream = TcpStream::connect(addr).await.unwrap();
        let encoder = Encoder::<BigEndian<4>>::new(Config::new().with_max_frame_len(300));
        let mut writer = AsyncFrameWriter::new(FromTokio::new(stream), encoder, [0u8; 4096]);
        for i in 0..COUNT {
            writer.write_frame(&message(i, 300)).await.unwrap();
        }
        writer.flush().await.unwrap();
    });
    for i in 0..COUNT {
        assert_eq!(
            rx.recv_timeout(LONG).unwrap(),
            message(i, 300),
            "message {i}"
        );
    }
    let stats = server.shutdown();
    assert_eq!(
        (stats.messages_in, stats.protocol_errors),
        (u64::from(COUNT), 0)
    );
}

#[test]
fn a_transport_std_writer_into_our_async_reader_on_tokio() {
    let rt = runtime();
    let listener = rt.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    let reader = rt.spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        read_all::<BigEndian<4>>(stream, 300).await
    });
    let writer: Writer = Writer::dial(addr, WriterConfig::new().with_max_frame_len(300)).unwrap();
    for i in 0..COUNT {
        writer.write(&message(i, 300)).unwrap();
    }
    let stats = writer.close();
    assert_eq!(stats.messages_out, u64::from(COUNT));
    assert_eq!(rt.block_on(reader).unwrap(), Ok(COUNT));
}

/// tokio-util's `FramedWrite` into our reader, and our writer into its `FramedRead`, with
/// the header `H` that its builder makes with `width` bytes and `little` endianness.
fn against_tokio_util<H: LengthPrefix>(width: usize, little: bool) {
    let max = usize::try_from(H::MAX_VALUE)
        .unwrap_or(usize::MAX)
        .min(1000);
    let codec = move || {
        let mut b = LengthDelimitedCodec::builder();
        b.length_field_length(width).max_frame_length(max);
        if little {
            b.little_endian();
        }
        b.new_codec()
    };
    let rt = runtime();
    rt.block_on(async move {
        // Theirs into ours.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let reader = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            read_all::<H>(stream, max).await
        });
        let mut theirs = FramedWrite::new(TcpStream::connect(addr).await.unwrap(), codec());
        for i in 0..COUNT {
            theirs.feed(Bytes::from(message(i, max))).await.unwrap();
        }
        SinkExt::<Bytes>::close(&mut theirs).await.unwrap();
        drop(theirs);
        assert_eq!(
            reader.await.unwrap(),
            Ok(COUNT),
            "width {width}, little {little}"
        );

        // Ours into theirs.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let reader = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let mut frames = FramedRead::new(stream, codec());
            let mut i = 0;
            while let Some(frame) = frames.next().await {
                assert_eq!(frame.unwrap(), message(i, max), "message {i}");
                i += 1;
            }
            i
        });
        let stream = TcpStream::connect(addr).await.unwrap();
        let encoder = Encoder::<H>::new(Config::new().with_max_frame_len(max));
        let mut ours = AsyncFrameWriter::new(FromTokio::new(stream), encoder, vec![0u8; 8192]);
        for i in 0..COUNT {
            ours.write_frame(&message(i, max)).await.unwrap();
        }
        ours.flush().await.unwrap();
        ours.into_inner().into_inner().shutdown().await.unwrap();
        assert_eq!(
            reader.await.unwrap(),
            COUNT,
            "width {width}, little {little}"
        );
    });
}

#[test]
fn every_tokio_util_header_width_and_byte_order_both_ways() {
    against_tokio_util::<BigEndian<1>>(1, false);
    against_tokio_util::<BigEndian<2>>(2, false);
    against_tokio_util::<BigEndian<3>>(3, false);
    against_tokio_util::<BigEndian<4>>(4, false);
    against_tokio_util::<BigEndian<8>>(8, false);
    against_tokio_util::<LittleEndian<2>>(2, true);
    against_tokio_util::<LittleEndian<4>>(4, true);
    against_tokio_util::<LittleEndian<8>>(8, true);
}

/// What our reader says about a peer that sent `bytes` and closed.
fn read_from_peer_that_sends(bytes: &'static [u8]) -> Result<u32, ReadError<std::io::Error>> {
    runtime().block_on(async move {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let mut peer = TcpStream::connect(addr).await.unwrap();
            peer.write_all(bytes).await.unwrap();
            peer.shutdown().await.unwrap();
        });
        let (stream, _) = listener.accept().await.unwrap();
        let decoder = Decoder::<BigEndian<4>, _>::new(Config::new(), [0u8; 4096]);
        let mut reader = AsyncFrameReader::new(FromTokio::new(stream), decoder, [0u8; 1024]);
        let mut n = 0;
        while let Some(frame) = reader.read_frame().await? {
            assert_eq!(frame, b"ok");
            n += 1;
        }
        Ok(n)
    })
}

#[test]
fn hostile_peers_get_typed_errors() {
    // A header declaring 2 GiB, after a good frame: refused before a byte of it is stored.
    let oversize = read_from_peer_that_sends(b"\x00\x00\x00\x02ok\x80\x00\x00\x00rest");
    assert!(
        matches!(
            oversize,
            Err(ReadError::Decode(DecodeError::FrameTooLong {
                len: 0x8000_0000,
                max: 4096
            }))
        ),
        "{oversize:?}"
    );
    // A peer that disconnects inside a frame, after a good one.
    let cut = read_from_peer_that_sends(b"\x00\x00\x00\x02ok\x00\x00\x00\x10half");
    assert!(matches!(cut, Err(ReadError::UnexpectedEof)), "{cut:?}");
    // And one that ends cleanly between frames.
    assert_eq!(
        read_from_peer_that_sends(b"\x00\x00\x00\x02ok\x00\x00\x00\x02ok").unwrap(),
        2
    );
}

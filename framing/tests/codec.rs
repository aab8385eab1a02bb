//! The tokio-util codec: the crate's decoder as its oracle at every split point, tokio-util's
//! `LengthDelimitedCodec` at the other end of real sockets for every format both speak, and
//! what a header alone makes each of them reserve.

use buffstreams_framing::harness::codec::codec_agrees;
use buffstreams_framing::harness::encode_all;
use buffstreams_framing::{
    BigEndian, Codec, CodecError, Config, DecodeError, EncodeError, LengthPrefix, LittleEndian,
    Oversize, Varint32, Varint64, for_each_format,
};
use bytes::{BufMut, Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use proptest::prelude::*;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::{
    Decoder as _, Encoder as _, Framed, FramedRead, FramedWrite, LengthDelimitedCodec,
};

fn payloads_for<H: LengthPrefix>() -> Vec<Vec<u8>> {
    [0usize, 1, 127, 128, 200, 255, 300, 4096]
        .into_iter()
        .filter(|&n| n as u64 <= H::MAX_VALUE)
        .map(|n| (0..n).map(|i| i as u8).collect())
        .collect()
}

fn every_split_point<H: LengthPrefix>() {
    let config = Config::new();
    let payloads = payloads_for::<H>();
    let stream = encode_all::<H>(config, &payloads);
    for i in 0..=stream.len() {
        codec_agrees::<H>(config, &stream, &[i]);
    }
    // A byte at a time.
    let every: Vec<usize> = (1..stream.len()).collect();
    codec_agrees::<H>(config, &stream, &every);
}

#[test]
fn every_format_at_every_split_point_gives_the_decoders_frames() {
    for_each_format!(every_split_point);
}

fn every_split_point_skipping<H: LengthPrefix>() {
    // 300 and 4096 are over the maximum: skipped, and counted.
    let config = Config::new()
        .with_max_frame_len(255)
        .with_oversize(Oversize::Skip);
    let payloads = payloads_for::<H>();
    let stream = encode_all::<H>(Config::new(), &payloads);
    for i in 0..=stream.len() {
        codec_agrees::<H>(config, &stream, &[i]);
    }
}

#[test]
fn oversize_frames_are_skipped_and_counted_like_the_decoder() {
    for_each_format!(every_split_point_skipping);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Any bytes a peer sends, cut anywhere: the decoder's frames, skips and errors.
    #[test]
    fn any_bytes_any_cuts_agree_with_the_decoder(
        stream in proptest::collection::vec(any::<u8>(), 0..600),
        mut cuts in proptest::collection::vec(0usize..600, 0..8),
        max in prop_oneof![Just(0usize), 1usize..300, Just(4096)],
        skip in any::<bool>(),
        includes_header in any::<bool>(),
    ) {
        cuts.sort_unstable();
        let config = Config::new()
            .with_max_frame_len(max)
            .with_oversize(if skip { Oversize::Skip } else { Oversize::Reject })
            .with_max_skip_len(1000)
            .with_length_includes_header(includes_header);
        macro_rules! check {
            ($($h:ty),*) => {$(
                codec_agrees::<$h>(config, &stream, &cuts);
            )*};
        }
        check!(BigEndian<1>, BigEndian<2>, BigEndian<4>, LittleEndian<3>, Varint32, Varint64,
            buffstreams_framing::BuffStreams<3>);
    }
}

#[test]
fn a_header_alone_reserves_nothing_where_length_delimited_codec_reserves_its_maximum() {
    // One 4-byte header declaring just under 8 MiB (tokio-util's default maximum), nothing
    // after it: what each codec's buffer holds afterwards.
    let declared = 8 * 1024 * 1024 - 1;
    let header = (declared as u32).to_be_bytes();

    let mut theirs = BytesMut::with_capacity(8 * 1024);
    theirs.put_slice(&header);
    assert!(
        LengthDelimitedCodec::new()
            .decode(&mut theirs)
            .unwrap()
            .is_none()
    );
    assert!(
        theirs.capacity() >= declared,
        "tokio-util reserved {} bytes",
        theirs.capacity()
    );

    let mut ours = BytesMut::with_capacity(8 * 1024);
    ours.put_slice(&header);
    let config = Config::new().with_max_frame_len(8 * 1024 * 1024);
    let mut codec = Codec::<BigEndian<4>>::new(config);
    assert!(codec.decode(&mut ours).unwrap().is_none());
    assert_eq!(
        ours.capacity(),
        8 * 1024,
        "the codec reserved room on a peer's word"
    );
    assert!(codec.is_mid_frame(&ours));
}

#[tokio::test]
async fn memory_follows_the_bytes_that_arrived_not_the_ones_declared() {
    // 64 connections each send a header declaring 8 MiB and 10 bytes of payload, then wait.
    // With ours, each FramedRead holds its initial 8 KiB; with tokio-util's codec, one such
    // connection holds 8 MiB.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = Config::new().with_max_frame_len(8 * 1024 * 1024);
    let mut held = Vec::new();
    let mut total = 0;
    for _ in 0..64 {
        let mut peer = TcpStream::connect(addr).await.unwrap();
        let declared = 8u32 * 1024 * 1024;
        let mut bytes = declared.to_be_bytes().to_vec();
        bytes.extend_from_slice(&[7; 10]);
        tokio::io::AsyncWriteExt::write_all(&mut peer, &bytes)
            .await
            .unwrap();
        let (socket, _) = listener.accept().await.unwrap();
        let mut frames = FramedRead::new(socket, Codec::<BigEndian<4>>::new(config));
        // Reads what arrived; no frame is whole.
        let polled =
            tokio::time::timeout(std::time::Duration::from_millis(20), frames.next()).await;
        assert!(polled.is_err(), "a frame came out of a partial stream");
        assert_eq!(frames.read_buffer().len(), 14);
        total += frames.read_buffer().capacity();
        held.push((peer, frames));
    }
    assert!(
        total <= 64 * 8 * 1024,
        "64 connections hold {total} bytes of read buffers"
    );
    let mut peer = TcpStream::connect(addr).await.unwrap();
    let mut bytes = (8u32 * 1024 * 1024).to_be_bytes().to_vec();
    bytes.extend_from_slice(&[7; 10]);
    tokio::io::AsyncWriteExt::write_all(&mut peer, &bytes)
        .await
        .unwrap();
    let (socket, _) = listener.accept().await.unwrap();
    let mut theirs = FramedRead::new(socket, LengthDelimitedCodec::new());
    let polled = tokio::time::timeout(std::time::Duration::from_millis(20), theirs.next()).await;
    assert!(polled.is_err());
    assert!(theirs.read_buffer().capacity() >= 8 * 1024 * 1024);
}

#[test]
fn frames_are_split_off_the_read_buffer_without_a_copy() {
    let mut codec = Codec::<BigEndian<4>>::default();
    let mut buf = BytesMut::with_capacity(1024);
    buf.put_slice(&[0, 0, 0, 3, b'a', b'b', b'c', 0, 0, 0, 2, b'd', b'e']);
    let base = buf.as_ptr() as usize;
    for want in [&b"abc"[..], b"de"] {
        let frame = codec.decode(&mut buf).unwrap().unwrap();
        assert_eq!(&frame[..], want);
        let at = frame.as_ptr() as usize;
        assert!(
            (base..base + 1024).contains(&at),
            "the frame was copied out of the read buffer"
        );
    }
}

#[test]
fn typed_errors_for_a_cut_stream_an_oversize_payload_and_a_bad_header() {
    let mut codec = Codec::<BigEndian<2>>::new(Config::new().with_max_frame_len(16));
    let mut buf = BytesMut::from(&[0u8, 5, b'a', b'b'][..]);
    assert!(
        codec
            .decode_eof(&mut buf)
            .is_err_and(|e| matches!(e, CodecError::UnexpectedEof { buffered: 4 }))
    );
    // A clean end is no error.
    assert!(codec.decode_eof(&mut BytesMut::new()).unwrap().is_none());

    let mut dst = BytesMut::new();
    assert!(matches!(
        codec.encode(&[0u8; 17][..], &mut dst),
        Err(CodecError::Encode(EncodeError::FrameTooLong { .. }))
    ));
    assert!(dst.is_empty(), "a refused payload left bytes behind");

    let mut buf = BytesMut::from(&[0u8, 17][..]);
    let e = codec.decode(&mut buf).unwrap_err();
    assert!(matches!(
        e,
        CodecError::Decode(DecodeError::FrameTooLong { len: 17, max: 16 })
    ));
    // Final: a stream cannot be resynchronised after a bad header.
    assert!(codec.decode(&mut BytesMut::from(&[0u8, 1, 9][..])).is_err());
    let io: std::io::Error = e.into();
    assert_eq!(io.kind(), std::io::ErrorKind::InvalidData);

    let mut varint = Codec::<Varint32>::default();
    let mut buf = BytesMut::from(&[0x80u8, 0x80, 0x80, 0x80, 0x10][..]);
    assert!(matches!(
        varint.decode(&mut buf),
        Err(CodecError::Decode(DecodeError::VarintOverflow))
    ));
}

fn tokio_codec(width: usize, little: bool, includes_header: bool) -> LengthDelimitedCodec {
    let mut b = LengthDelimitedCodec::builder();
    b.length_field_length(width).max_frame_length(70_000);
    if little {
        b.little_endian();
    }
    if includes_header {
        b.length_adjustment(-(width as isize));
    }
    b.new_codec()
}

/// Our codec writes, tokio-util's reads, over a real socket; then the other way round.
async fn both_ways<H: LengthPrefix>(width: usize, little: bool, includes_header: bool) {
    let config = Config::new()
        .with_max_frame_len(70_000)
        .with_length_includes_header(includes_header);
    let payloads: Vec<Bytes> = [0usize, 1, 100, 255, 256, 4096, 65_000]
        .into_iter()
        .filter(|&n| (n + if includes_header { width } else { 0 }) as u64 <= H::MAX_VALUE)
        .map(|n| Bytes::from((0..n).map(|i| (i * 7) as u8).collect::<Vec<u8>>()))
        .collect();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    for ours_writes in [true, false] {
        let sent = payloads.clone();
        let writer = tokio::spawn(async move {
            let socket = TcpStream::connect(addr).await.unwrap();
            if ours_writes {
                let mut out = FramedWrite::new(socket, Codec::<H>::new(config));
                for p in sent {
                    out.send(p).await.unwrap();
                }
            } else {
                let mut out = FramedWrite::new(socket, tokio_codec(width, little, includes_header));
                for p in sent {
                    out.send(p).await.unwrap();
                }
            }
        });
        let (socket, _) = listener.accept().await.unwrap();
        let got: Vec<Bytes> = if ours_writes {
            let frames = FramedRead::new(socket, tokio_codec(width, little, includes_header));
            frames.map(|f| f.unwrap().freeze()).collect().await
        } else {
            let frames = FramedRead::new(socket, Codec::<H>::new(config));
            frames.map(|f| f.unwrap().freeze()).collect().await
        };
        writer.await.unwrap();
        assert_eq!(
            got,
            payloads,
            "{} width {width} little {little} includes_header {includes_header}, ours writes: {ours_writes}",
            core::any::type_name::<H>()
        );
    }
}

#[tokio::test]
async fn length_delimited_codec_reads_ours_and_we_read_it_for_every_shared_format() {
    macro_rules! widths {
        ($($n:literal),*) => {$(
            for includes_header in [false, true] {
                both_ways::<BigEndian<$n>>($n, false, includes_header).await;
                both_ways::<LittleEndian<$n>>($n, true, includes_header).await;
            }
        )*};
    }
    widths!(1, 2, 3, 4, 5, 6, 7, 8);
}

#[tokio::test]
async fn framed_echo_with_every_format() {
    async fn echo<H: LengthPrefix + Send + 'static>() {
        let config = Config::new().with_max_frame_len(5000);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            let mut framed = Framed::new(socket, Codec::<H>::new(config));
            while let Some(frame) = framed.next().await {
                framed.send(frame.unwrap()).await.unwrap();
            }
        });
        let mut client = Framed::new(
            TcpStream::connect(addr).await.unwrap(),
            Codec::<H>::new(config),
        );
        for p in payloads_for::<H>() {
            client.send(&p[..]).await.unwrap();
            assert_eq!(client.next().await.unwrap().unwrap(), &p[..]);
        }
        drop(client);
        server.await.unwrap();
    }
    echo::<BigEndian<1>>().await;
    echo::<BigEndian<4>>().await;
    echo::<LittleEndian<8>>().await;
    echo::<Varint32>().await;
    echo::<Varint64>().await;
    echo::<buffstreams_framing::BuffStreams<2>>().await;
    echo::<buffstreams_framing::BuffStreams<10>>().await;
}

//! `--peer tokio`: tokio-util's `Framed` + `LengthDelimitedCodec` on both ends, as a tokio
//! user writes it (`feed`, and `flush` every 64 messages). `--peer tokio-codec`: the same
//! `Framed` machinery with the framing crate's `Codec` instead. `--peer tokio-framing`: the framing
//! crate's `AsyncFrameWriter` / `AsyncFrameReader` on the same runtime (2 worker threads),
//! over the same sockets through `embedded-io-adapters`' `FromTokio`, with the same flush
//! policy. `--peer tokio-rustls`: `Framed` + `LengthDelimitedCodec` over tokio-rustls streams,
//! mutual TLS.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

use buffstreams_framing::{BigEndian, Codec, Config, Decoder, Encoder};
use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tokio_util::codec::{Framed, FramedRead};

use crate::Peer;
use crate::runner::{Outcome, Run};
use crate::tls::tls;

/// Reads frames through `codec` until the stream ends, handing each one's length to `count`.
async fn read_framed<S, C>(stream: S, codec: C, mut count: impl FnMut(usize))
where
    S: AsyncRead + AsyncWrite + Unpin,
    C: tokio_util::codec::Decoder<Item = BytesMut>,
    C::Error: std::fmt::Debug,
{
    let mut frames = FramedRead::with_capacity(stream, codec, 64 * 1024);
    while let Some(f) = frames.next().await {
        match f {
            Ok(f) => count(f.len()),
            Err(e) => {
                eprintln!("reader: {e:?}");
                break;
            }
        }
    }
}

/// Writes `payload` through `codec` until `stop`, flushing every `flush_every` messages;
/// returns how many.
async fn write_framed<S, C>(
    stream: S,
    codec: C,
    payload: usize,
    flush_every: u64,
    stop: &AtomicBool,
) -> u64
where
    S: AsyncRead + AsyncWrite + Unpin,
    C: tokio_util::codec::Encoder<Bytes>,
    C::Error: std::fmt::Debug,
{
    let mut sink = Framed::new(stream, codec);
    let msg = Bytes::from(vec![0xa5u8; payload]);
    let mut n = 0u64;
    while !stop.load(Relaxed) {
        for _ in 0..256 {
            if flush_every == 1 {
                sink.send(msg.clone()).await.expect("send");
            } else {
                sink.feed(msg.clone()).await.expect("feed");
                if flush_every > 0 && (n + 1).is_multiple_of(flush_every) {
                    SinkExt::<Bytes>::flush(&mut sink).await.expect("flush");
                }
            }
            n += 1;
        }
    }
    // Flushed and closed (under TLS, close_notify tells the reader the stream ended whole),
    // then read to the end: what the server sent (TLS session tickets) must not be left
    // unread, or closing resets the connection and the server loses what it had not read.
    SinkExt::<Bytes>::close(&mut sink).await.expect("close");
    let mut stream = sink.into_inner();
    let mut buf = [0u8; 4096];
    while let Ok(n) = tokio::io::AsyncReadExt::read(&mut stream, &mut buf).await {
        if n == 0 {
            break;
        }
    }
    n
}

pub fn run(run: &Run) -> Outcome {
    use buffstreams_framing::{AsyncFrameReader, AsyncFrameWriter};
    use embedded_io_adapters::tokio_1::FromTokio;
    use tokio_util::codec::LengthDelimitedCodec;

    let ours = run.peer == Peer::TokioFraming;
    let our_codec = run.peer == Peer::TokioCodec;
    let secure = run.peer == Peer::TokioRustls;
    let acceptor = TlsAcceptor::from(tls().server.clone());
    let connector = TlsConnector::from(tls().client.clone());
    let flush_every = run.flush_every;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let payload = run.payload;
    let received = Arc::new(AtomicU64::new(0));
    let mismatches = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let config = Config::new().with_max_frame_len(payload.max(1));
    let codec = move || {
        LengthDelimitedCodec::builder()
            .max_frame_length(payload.max(1))
            .new_codec()
    };
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let connections = run.connections;
    let server = {
        let (received, mismatches) = (received.clone(), mismatches.clone());
        rt.spawn(async move {
            let mut readers = Vec::new();
            for _ in 0..connections {
                let (stream, _) = listener.accept().await.expect("accept");
                let (received, mismatches) = (received.clone(), mismatches.clone());
                let acceptor = acceptor.clone();
                readers.push(tokio::spawn(async move {
                    let mut local = 0u64;
                    let mut count = |len: usize| {
                        if len != payload {
                            mismatches.fetch_add(1, Relaxed);
                        }
                        local += 1;
                        if local.is_multiple_of(1024) {
                            received.fetch_add(1024, Relaxed);
                        }
                    };
                    if ours {
                        let decoder = Decoder::<BigEndian<4>, _>::new(config, Vec::new());
                        let mut frames = AsyncFrameReader::new(
                            FromTokio::new(stream),
                            decoder,
                            vec![0u8; 64 * 1024],
                        );
                        while let Ok(Some(f)) = frames.read_frame().await {
                            count(f.len());
                        }
                    } else if our_codec {
                        read_framed(stream, Codec::<BigEndian<4>>::new(config), count).await;
                    } else if secure {
                        let stream = acceptor.accept(stream).await.expect("TLS accept");
                        read_framed(stream, codec(), count).await;
                    } else {
                        read_framed(stream, codec(), count).await;
                    }
                    received.fetch_add(local % 1024, Relaxed);
                }));
            }
            for r in readers {
                r.await.expect("reader task");
            }
        })
    };
    let writers: Vec<_> = (0..connections)
        .map(|_| {
            let (stop, connector) = (stop.clone(), connector.clone());
            rt.spawn(async move {
                let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
                stream.set_nodelay(true).expect("nodelay");
                let mut n = 0u64;
                if ours {
                    let encoder = Encoder::<BigEndian<4>>::new(config);
                    let mut sink = AsyncFrameWriter::new(
                        FromTokio::new(stream),
                        encoder,
                        vec![0u8; 64 * 1024],
                    );
                    let msg = vec![0xa5u8; payload];
                    while !stop.load(Relaxed) {
                        for _ in 0..256 {
                            sink.write_frame(&msg).await.expect("write");
                            n += 1;
                            if flush_every > 0 && n.is_multiple_of(flush_every) {
                                sink.flush().await.expect("flush");
                            }
                        }
                    }
                    sink.flush().await.expect("flush");
                } else if our_codec {
                    let codec = Codec::<BigEndian<4>>::new(config);
                    n = write_framed(stream, codec, payload, flush_every, &stop).await;
                } else if secure {
                    let stream = connector
                        .connect(tls().name.clone(), stream)
                        .await
                        .expect("TLS connect");
                    n = write_framed(stream, codec(), payload, flush_every, &stop).await;
                } else {
                    n = write_framed(stream, codec(), payload, flush_every, &stop).await;
                }
                n
            })
        })
        .collect();
    let (in_window, elapsed) = run.meter(|| received.load(Relaxed), &stop);
    let sent: u64 = writers
        .into_iter()
        .map(|t| rt.block_on(t).expect("writer task"))
        .sum();
    rt.block_on(server).expect("server task");
    Outcome {
        in_window,
        elapsed,
        sent,
        received: received.load(Relaxed),
        mismatches: mismatches.load(Relaxed),
    }
}

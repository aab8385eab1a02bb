#![allow(missing_docs)] // criterion_group! generates undocumented items
//! Decoding throughput, side by side with tokio-util's `LengthDelimitedCodec` on the same bytes.
//!
//! `cargo bench -p buffstreams-framing --bench decode`
//!
//! "codec": the crate's tokio-util `Codec` in the loop tokio-util's codec runs in.
//!
//! "contiguous": the whole stream is one buffer. "chunked": the stream arrives in 64 KiB reads;
//! both decoders copy each read into their own read buffer first (tokio-util's `BytesMut`, our
//! fixed array), as a socket read would.

use std::hint::black_box;
use std::time::Duration;

use buffstreams_framing::{BigEndian, Codec, Config, Decoder, Encoder, Event};
use bytes::BytesMut;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tokio_util::codec::{Decoder as _, LengthDelimitedCodec};

const CHUNK: usize = 64 * 1024;

fn stream(payload: usize, frames: usize) -> Vec<u8> {
    let enc = Encoder::<BigEndian<4>>::new(Config::new().with_max_frame_len(1 << 20));
    let body: Vec<u8> = (0..payload).map(|i| i as u8).collect();
    let mut out = Vec::with_capacity(frames * (payload + 4));
    for _ in 0..frames {
        out.extend_from_slice(&enc.header(payload).unwrap());
        out.extend_from_slice(&body);
    }
    out
}

/// Decodes every frame in `input`; returns (frames, payload bytes) so nothing is optimised out.
#[inline]
fn ours_feed(
    dec: &mut Decoder<BigEndian<4>, [u8; 8192]>,
    mut input: &[u8],
    acc: &mut (usize, usize),
) {
    while !input.is_empty() {
        let f = dec.feed(input).unwrap();
        input = &input[f.consumed..];
        if let Some(Event::Frame(p)) = f.event {
            acc.0 += 1;
            acc.1 += black_box(p).len();
        }
    }
}

/// A tokio-util codec's loop: each 64 KiB read appended to a `BytesMut`, every frame decoded.
fn chunked_codec<C>(b: &mut criterion::Bencher<'_>, mut codec: C, data: &[u8], frames: usize)
where
    C: tokio_util::codec::Decoder<Item = BytesMut>,
    C::Error: std::fmt::Debug,
{
    let mut buf = BytesMut::with_capacity(2 * CHUNK);
    b.iter(|| {
        let mut acc = (0usize, 0usize);
        for chunk in black_box(data).chunks(CHUNK) {
            buf.reserve(chunk.len());
            buf.extend_from_slice(chunk);
            while let Some(f) = codec.decode(&mut buf).unwrap() {
                acc.0 += 1;
                acc.1 += black_box(f).len();
            }
        }
        assert_eq!(acc.0, frames);
        acc
    })
}

fn bench(c: &mut Criterion) {
    for (payload, frames) in [(110usize, 20_000usize), (4096, 1_000)] {
        let data = stream(payload, frames);
        let mut g = c.benchmark_group(format!("decode_{payload}B"));
        g.throughput(Throughput::Elements(frames as u64));
        g.measurement_time(Duration::from_secs(3))
            .warm_up_time(Duration::from_secs(1))
            .sample_size(30);
        let config = Config::new().with_max_frame_len(8192);

        g.bench_function("buffstreams/contiguous", |b| {
            let mut dec = Decoder::<BigEndian<4>, _>::new(config, [0u8; 8192]);
            b.iter(|| {
                let mut acc = (0, 0);
                ours_feed(&mut dec, black_box(&data), &mut acc);
                assert_eq!(acc.0, frames);
                acc
            })
        });
        g.bench_function("buffstreams/chunked_64k", |b| {
            let mut dec = Decoder::<BigEndian<4>, _>::new(config, [0u8; 8192]);
            let mut rbuf = vec![0u8; CHUNK];
            b.iter(|| {
                let mut acc = (0, 0);
                for chunk in black_box(&data).chunks(CHUNK) {
                    rbuf[..chunk.len()].copy_from_slice(chunk);
                    ours_feed(&mut dec, &rbuf[..chunk.len()], &mut acc);
                }
                assert_eq!(acc.0, frames);
                acc
            })
        });
        g.bench_function("tokio-util/contiguous", |b| {
            let mut codec = LengthDelimitedCodec::builder()
                .max_frame_length(8192)
                .new_codec();
            b.iter_batched_ref(
                || BytesMut::from(&data[..]),
                |buf| {
                    let mut acc = (0usize, 0usize);
                    while let Some(f) = codec.decode(buf).unwrap() {
                        acc.0 += 1;
                        acc.1 += black_box(f).len();
                    }
                    assert_eq!(acc.0, frames);
                    acc
                },
                criterion::BatchSize::LargeInput,
            )
        });
        g.bench_function("tokio-util/chunked_64k", |b| {
            let codec = LengthDelimitedCodec::builder()
                .max_frame_length(8192)
                .new_codec();
            chunked_codec(b, codec, &data, frames)
        });
        // The same loop with this crate's tokio-util codec.
        g.bench_function("codec/chunked_64k", |b| {
            chunked_codec(b, Codec::<BigEndian<4>>::new(config), &data, frames)
        });
        g.bench_function("bare-header-walk/contiguous", |b| {
            b.iter(|| {
                let data = black_box(&data[..]);
                let mut at = 0;
                let mut n = 0usize;
                while let Some(h) = data.get(at..at + 4) {
                    let len = u32::from_be_bytes(h.try_into().unwrap()) as usize;
                    at += 4 + len;
                    n += 1;
                }
                assert_eq!(n, frames);
                n
            })
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);

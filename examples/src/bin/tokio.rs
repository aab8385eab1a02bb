//! The framing crate on tokio: an echo server and a client that pipelines requests, on one
//! runtime. By default both use tokio-util's `Framed` with the framing crate's `Codec` (what a
//! tokio user writes with `LengthDelimitedCodec`, in any header format); `--api reader-writer`
//! uses `AsyncFrameReader` / `AsyncFrameWriter` over the sockets (through
//! `embedded-io-adapters`) instead. Prints the messages echoed per second and checks every
//! reply.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Instant;

use buffstreams_framing::{
    AsyncFrameReader, AsyncFrameWriter, BigEndian, Codec, Config, Decoder, Encoder,
};
use clap::{Parser, ValueEnum};
use embedded_io_adapters::tokio_1::FromTokio;
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::Framed;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The framing crate's async reader and writer on tokio.
#[derive(Debug, Parser)]
#[command(
    name = "tokio",
    version,
    allow_negative_numbers = true,
    about = "The framing crate on tokio: an echo server and a pipelining client, every reply checked",
    after_help = "Examples:\n  \
                  tokio                                    100,000 echoes of 110 bytes\n  \
                  tokio --count 10000 --payload 4096\n  \
                  tokio --api reader-writer                the async reader and writer"
)]
struct Args {
    /// How both ends frame messages.
    #[arg(long, value_enum, default_value_t = Api::Codec)]
    api: Api,
    /// Messages to echo.
    #[arg(long, default_value_t = 100_000)]
    count: u64,
    /// Bytes per message.
    #[arg(long, default_value_t = 110)]
    payload: usize,
}

/// The framing crate's two ways onto tokio.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Api {
    /// tokio-util's `Framed` with `Codec<BigEndian<4>>`.
    Codec,
    /// `AsyncFrameReader` / `AsyncFrameWriter` through `embedded-io-adapters`.
    ReaderWriter,
}

fn main() -> ExitCode {
    let Args {
        api,
        count,
        payload,
    } = Args::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tokio: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match api {
        Api::Codec => rt.block_on(run_codec(count, payload)),
        Api::ReaderWriter => rt.block_on(run(count, payload)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tokio: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Starts an echo server on an ephemeral loopback port, each connection served by `echo` in
/// its own task; returns its address.
async fn serve<F, Fut>(config: Config, how: &str, echo: F) -> Result<SocketAddr, BoxError>
where
    F: Fn(TcpStream, Config) -> Fut + Copy + Send + 'static,
    Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    println!("echo server on {addr} ({how})");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                if let Err(e) = echo(stream, config).await {
                    eprintln!("server: {e}");
                }
            });
        }
    });
    Ok(addr)
}

/// The echo server and the client with `Framed` and the framing crate's `Codec`.
async fn run_codec(count: u64, payload: usize) -> Result<(), BoxError> {
    let config = Config::new().with_max_frame_len(payload.max(1));
    let addr = serve(config, "Framed + Codec<BigEndian<4>>", echo_codec).await?;

    let started = Instant::now();
    let framed = Framed::new(
        TcpStream::connect(addr).await?,
        Codec::<BigEndian<4>>::new(config),
    );
    let (mut out, mut replies) = framed.split();
    let sender = tokio::spawn(async move {
        for i in 0..count {
            out.feed(message(i, payload)).await?;
        }
        out.flush().await?;
        Ok::<_, BoxError>(())
    });
    for i in 0..count {
        check_reply(i, replies.next().await.transpose()?.as_deref(), payload)?;
    }
    let elapsed = started.elapsed();
    sender.await??;
    report(count, payload, elapsed);
    Ok(())
}

/// Reads frames and writes each one back through one `Framed`; the replies to what has been
/// read go out together before the server waits for more.
async fn echo_codec(stream: TcpStream, config: Config) -> Result<(), BoxError> {
    let mut framed = Framed::new(stream, Codec::<BigEndian<4>>::new(config));
    while let Some(request) = framed.next().await {
        framed.feed(request?).await?;
        if framed.read_buffer().is_empty() {
            SinkExt::<bytes::BytesMut>::flush(&mut framed).await?;
        }
    }
    SinkExt::<bytes::BytesMut>::flush(&mut framed).await?;
    Ok(())
}

fn report(count: u64, payload: usize, elapsed: std::time::Duration) {
    println!(
        "{count} messages of {payload} bytes echoed and checked in {elapsed:.2?}: {:.2} M msgs/s \
         each way",
        count as f64 / elapsed.as_secs_f64() / 1e6
    );
}

/// The echo server and the client with the async reader and writer.
async fn run(count: u64, payload: usize) -> Result<(), BoxError> {
    let config = Config::new().with_max_frame_len(payload.max(1));
    let addr = serve(config, "AsyncFrameReader / AsyncFrameWriter", echo).await?;

    let started = Instant::now();
    let (rx, tx) = TcpStream::connect(addr).await?.into_split();
    let sender = tokio::spawn(async move {
        let encoder = Encoder::<BigEndian<4>>::new(config);
        let mut out = AsyncFrameWriter::new(FromTokio::new(tx), encoder, vec![0u8; 64 * 1024]);
        for i in 0..count {
            out.write_frame(&message(i, payload)).await?;
        }
        out.flush().await?;
        Ok::<_, BoxError>(())
    });
    let decoder = Decoder::<BigEndian<4>, _>::new(config, Vec::new());
    let mut replies = AsyncFrameReader::new(FromTokio::new(rx), decoder, vec![0u8; 64 * 1024]);
    for i in 0..count {
        check_reply(i, replies.read_frame().await?, payload)?;
    }
    let elapsed = started.elapsed();
    sender.await??;
    report(count, payload, elapsed);
    Ok(())
}

/// Reads frames and writes each one back; the replies to what has been read go out before
/// the server waits for more, together.
async fn echo(stream: TcpStream, config: Config) -> Result<(), BoxError> {
    let (rx, tx) = stream.into_split();
    let decoder = Decoder::<BigEndian<4>, _>::new(config, Vec::new());
    let mut requests = AsyncFrameReader::new(FromTokio::new(rx), decoder, vec![0u8; 64 * 1024]);
    let encoder = Encoder::<BigEndian<4>>::new(config);
    let mut replies = AsyncFrameWriter::new(FromTokio::new(tx), encoder, vec![0u8; 64 * 1024]);
    loop {
        if requests.buffered() == 0 {
            replies.flush().await?;
        }
        match requests.read_frame().await? {
            Some(request) => replies.write_frame(request).await?,
            None => break,
        };
    }
    replies.flush().await?;
    Ok(())
}

/// Reply `i` (`None`: the server closed) must be request `i`.
fn check_reply(i: u64, reply: Option<&[u8]>, payload: usize) -> Result<(), BoxError> {
    match reply {
        Some(reply) if reply == message(i, payload).as_slice() => Ok(()),
        Some(_) => Err(format!("reply {i} differs from its request").into()),
        None => Err(format!("the server closed after {i} replies").into()),
    }
}

fn message(i: u64, payload: usize) -> Vec<u8> {
    let mut m = vec![0u8; payload];
    for (j, b) in m.iter_mut().enumerate() {
        *b = (i as usize).wrapping_add(j) as u8;
    }
    m
}

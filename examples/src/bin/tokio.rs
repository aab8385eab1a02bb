//! The framing crate on tokio: an echo server and a client that pipelines requests, both
//! with `AsyncFrameReader` / `AsyncFrameWriter` over tokio sockets (through
//! `embedded-io-adapters`), on one runtime. Prints the messages echoed per second and checks
//! every reply.

use std::process::ExitCode;
use std::time::Instant;

use buffstreams_framing::{
    AsyncFrameReader, AsyncFrameWriter, BigEndian, Config, Decoder, Encoder,
};
use clap::Parser;
use embedded_io_adapters::tokio_1::FromTokio;
use tokio::net::{TcpListener, TcpStream};

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
                  tokio --count 10000 --payload 4096"
)]
struct Args {
    /// Messages to echo.
    #[arg(long, default_value_t = 100_000)]
    count: u64,
    /// Bytes per message.
    #[arg(long, default_value_t = 110)]
    payload: usize,
}

fn main() -> ExitCode {
    let Args { count, payload } = Args::parse();
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
    match rt.block_on(run(count, payload)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tokio: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(count: u64, payload: usize) -> Result<(), BoxError> {
    let config = Config::new().with_max_frame_len(payload.max(1));
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    println!("echo server on {addr}");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                if let Err(e) = echo(stream, config).await {
                    eprintln!("server: {e}");
                }
            });
        }
    });

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
        match replies.read_frame().await? {
            Some(reply) if reply == message(i, payload).as_slice() => {}
            Some(_) => return Err(format!("reply {i} differs from its request").into()),
            None => return Err(format!("the server closed after {i} replies").into()),
        }
    }
    let elapsed = started.elapsed();
    sender.await??;
    println!(
        "{count} messages of {payload} bytes echoed and checked in {elapsed:.2?}: {:.2} M msgs/s \
         each way",
        count as f64 / elapsed.as_secs_f64() / 1e6
    );
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

fn message(i: u64, payload: usize) -> Vec<u8> {
    let mut m = vec![0u8; payload];
    for (j, b) in m.iter_mut().enumerate() {
        *b = (i as usize).wrapping_add(j) as u8;
    }
    m
}

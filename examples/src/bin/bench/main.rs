//! Throughput bench: a listener and N writers on loopback in one process, every peer on the
//! same workload, interleaved in rounds, then one table of messages/s, MB/s and each peer's
//! ratio to the std baseline and to tokio-util. Every run counts the received messages and
//! checks their size; a mismatch fails the run.
//!
//! Each peer is driven by its own module, written to be read as an example of its API:
//! [`buffstreams`] (transport-std's `Writer` into its `Listener`), [`framing`] (the framing
//! crate's `FrameWriter` into the same `Listener`), [`on_tokio`] (tokio-util's `Framed`, and the
//! framing crate's async reader and writer on tokio), [`std_baseline`] (a plain `BufWriter` /
//! `BufReader`). [`runner`] times a run, [`report`] prints it, [`rtt`] measures round trips,
//! [`handshakes`] TLS handshakes per second and [`idle`] the memory of idle connections.
//! `bench --help` lists every flag.

mod buffstreams;
mod framing;
mod handshakes;
mod idle;
mod on_tokio;
mod progress;
mod report;
mod rtt;
mod runner;
mod std_baseline;
mod tls;

use std::process::ExitCode;

use clap::{Parser, ValueEnum};

/// What runs: the peers of the throughput bench, and those of `--rtt`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Peer {
    /// Every plain-TCP throughput peer (std-baseline, buffstreams, buffstreams-acked, framing,
    /// tokio, tokio-codec, tokio-framing; the TLS peers run when named); with --rtt, every
    /// round-trip peer beside raw; with --handshakes, both TLS servers.
    All,
    /// A plain `BufWriter` writing the header then the payload, a `BufReader` reading them.
    StdBaseline,
    /// transport-std's `Writer` into its `Listener`.
    Buffstreams,
    /// The same in the acknowledged mode (every message acknowledged by the listener); with
    /// --rtt, a request through an acknowledged `Writer` and the reply back on its connection.
    BuffstreamsAcked,
    /// transport-std's `Writer` into its `Listener` over mutual TLS (rustls).
    BuffstreamsTls,
    /// tokio-rustls under tokio-util's `Framed` + `LengthDelimitedCodec` on both ends, mutual
    /// TLS with the same certificates (the flush policy of tokio).
    TokioRustls,
    /// The framing crate's unshared `FrameWriter` over a plain socket into the same `Listener`.
    Framing,
    /// tokio-util's `Framed` + `LengthDelimitedCodec` on both ends.
    Tokio,
    /// The framing crate's `AsyncFrameWriter` / `AsyncFrameReader` on tokio.
    TokioFraming,
    /// tokio-util's `Framed` on both ends with the framing crate's `Codec` in place of
    /// `LengthDelimitedCodec` (the same machinery and flush policy as tokio).
    TokioCodec,
    /// One frame built once and written again and again (a reference, not a peer).
    StdPrebuilt,
    /// --rtt only: raw-socket ping-pong (always runs first with --rtt).
    Raw,
    /// --rtt only: request and reply each through a `Writer` → `Listener` pair, never flushed.
    Writer,
    /// --rtt only: like writer, with `Writer::send`.
    WriterSend,
    /// --rtt only: a request through a `Writer` (`send`), the reply back on its connection
    /// (`with_on_reply`): the plain twin of buffstreams-acked.
    WriterReply,
}

impl Peer {
    /// The name on the command line.
    pub fn name(self) -> String {
        self.to_possible_value()
            .expect("every peer has a name")
            .get_name()
            .to_string()
    }

    /// Whether it is a round-trip peer (`--rtt`).
    fn rtt_only(self) -> bool {
        matches!(
            self,
            Peer::Raw | Peer::Writer | Peer::WriterSend | Peer::WriterReply
        )
    }
}

/// The command line.
#[derive(Clone, Debug, Parser)]
#[command(
    name = "bench",
    version,
    allow_negative_numbers = true,
    about = "Messages per second over loopback: buffstreams beside tokio-util and plain std, side by side",
    after_help = "Without --peer every throughput peer runs, 3 rounds of 2 s each, the std baseline \
                  first: about 45 s. The live rate goes to stderr, the table to stdout.\n\n\
                  Examples:\n  \
                  bench                                    every peer side by side\n  \
                  bench --peer buffstreams --seconds 5     one peer, a summary line\n  \
                  bench --connections 4 --payload 4096 --markdown\n  \
                  bench --rtt                              round trips beside raw sockets
  \
                  bench --handshakes --connections 2       TLS handshakes per second"
)]
pub struct Args {
    /// Peers to run, comma-separated; several run side by side in rounds.
    #[arg(long, value_delimiter = ',', default_value = "all")]
    pub peer: Vec<Peer>,
    /// Rounds of every peer (side by side).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
    pub rounds: u64,
    /// Writer connections, each its own thread (or task).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub connections: u64,
    /// Bytes per message.
    #[arg(long, default_value_t = 110)]
    pub payload: usize,
    /// Seconds of measurement per run [default: 2 with several peers, 5 with one].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub seconds: Option<u64>,
    /// Flush after every N messages (1: after each; 0: only when a buffer is full) [default:
    /// 64 for tokio and tokio-framing, 0 for the others].
    #[arg(long)]
    pub flush_every: Option<u64>,
    /// buffstreams: hand N messages to `Writer::write_batch` per call.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=256))]
    pub batch: u64,
    /// Machine-readable lines on stdout (one JSON object per peer) instead of the table.
    #[arg(long, conflicts_with = "markdown")]
    pub json: bool,
    /// The side-by-side table as markdown, headed by the command, the date and the machine's
    /// state (CPU, load, the std baseline's rate in this run), for docs/PERFORMANCE.md.
    #[arg(long)]
    pub markdown: bool,
    /// Each busy thread's CPU time per message (Linux), at the end of each run.
    #[arg(long)]
    pub cpu: bool,
    /// Round trips instead of throughput: one request outstanding at a time, percentiles
    /// beside raw-socket ping-pong (peers: buffstreams, writer, writer-send, writer-reply,
    /// buffstreams-acked; all by default).
    #[arg(long)]
    pub rtt: bool,
    /// TLS handshakes per second a listener serves (peers: buffstreams-tls, tokio-rustls; both
    /// by default), `--connections` client threads.
    #[arg(long, conflicts_with = "rtt")]
    pub handshakes: bool,
    /// Instead of a bench: resident memory per idle connection, with N connections held.
    #[arg(long, value_name = "N", conflicts_with_all = ["rtt", "peer"])]
    pub idle_connections: Option<usize>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(n) = args.idle_connections {
        return idle::run(n);
    }
    let all = args.peer.contains(&Peer::All);
    if args.handshakes {
        let peers = if all {
            vec![Peer::BuffstreamsTls, Peer::TokioRustls]
        } else {
            args.peer.clone()
        };
        if let Some(p) = peers
            .iter()
            .find(|p| !matches!(p, Peer::BuffstreamsTls | Peer::TokioRustls))
        {
            return usage_error(&format!(
                "--handshakes runs buffstreams-tls and tokio-rustls, not {}",
                p.name()
            ));
        }
        return handshakes::run(&args, &peers);
    }
    if args.rtt {
        let peers = if all {
            vec![
                Peer::Buffstreams,
                Peer::Writer,
                Peer::WriterSend,
                Peer::WriterReply,
                Peer::BuffstreamsAcked,
            ]
        } else {
            args.peer.clone()
        };
        if let Some(p) = peers
            .iter()
            .find(|p| !matches!(p, Peer::Buffstreams | Peer::BuffstreamsAcked) && !p.rtt_only())
        {
            return usage_error(&format!(
                "--rtt runs buffstreams, buffstreams-acked, writer, writer-send or writer-reply beside raw, not {}",
                p.name()
            ));
        }
        return rtt::run(&args, &peers);
    }
    let peers = if all {
        vec![
            Peer::StdBaseline,
            Peer::Buffstreams,
            Peer::BuffstreamsAcked,
            Peer::Framing,
            Peer::Tokio,
            Peer::TokioCodec,
            Peer::TokioFraming,
        ]
    } else {
        args.peer.clone()
    };
    if let Some(p) = peers.iter().find(|p| p.rtt_only()) {
        return usage_error(&format!("{} is a --rtt peer", p.name()));
    }
    report::run(&args, &peers)
}

/// A bad combination of flags, worded like clap's own errors; exit status 2.
fn usage_error(message: &str) -> ExitCode {
    use clap::CommandFactory;
    Args::command()
        .error(clap::error::ErrorKind::ArgumentConflict, message)
        .print()
        .expect("stderr");
    ExitCode::from(2)
}

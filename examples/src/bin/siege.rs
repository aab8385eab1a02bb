//! A listener under a connection-exhaustion attack, with its default configuration: one
//! peer holds every connection slot (idle connections and half-header ones), then
//! well-behaved clients arrive and each makes one request/response round trip. Prints how
//! long each newcomer waited to be served, what the listener closed, and its threads and
//! resident memory meanwhile (Linux `/proc`).
//!
//! The defaults hold 2,000 connections (1,500 idle, 500 half-header) against a listener capped
//! at 1,024 (its default), so the attacker also keeps reconnecting into the cap. Needs about
//! 2 × the held connections in file descriptors: it raises its own soft limit to the hard one.
//!
//! With `--tls` the listener requires mutual TLS (certificates made at start): the attacker's
//! half-header connections send half a ClientHello instead, and every newcomer completes a
//! TLS handshake before its round trip.
//!
//! With `--max-threads` and `--max-rss-mib` it is a check: it exits with status 1 when a
//! newcomer was not served or the process went over either bound (CI runs it so, with the
//! defaults, in `examples/tests/programs.rs`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant};

use buffstreams_test_support::pki::{MutualTls, name};
use buffstreams_transport_std::rustls;
use buffstreams_transport_std::{Listener, ListenerConfig, ListenerHandle};
use clap::Parser;

/// A connection-exhaustion attack on a listener with its defaults.
#[derive(Debug, Parser)]
#[command(
    name = "siege",
    version,
    allow_negative_numbers = true,
    about = "A listener with its defaults while one peer holds its connection slots: how long newcomers wait, what was closed, threads and memory",
    after_help = "Needs about 2 x (--idle + --half-header) file descriptors (ulimit -n).\n\n\
                  Examples:\n  \
                  siege                                    2,000 hostile connections, the defaults\n  \
                  siege --idle 500 --half-header 500 --max-connections 256\n  \
                  siege --tls --idle 500 --half-header 500     the same against a mutual-TLS listener"
)]
struct Args {
    /// Connections the attacker holds open without sending anything.
    #[arg(long, default_value_t = 1500)]
    idle: usize,
    /// Connections the attacker holds after sending half a header.
    #[arg(long, default_value_t = 500)]
    half_header: usize,
    /// Well-behaved clients arriving afterwards, one round trip each.
    #[arg(long, default_value_t = 20)]
    clients: usize,
    /// The listener's connection cap [default: the listener's default, 1024].
    #[arg(long)]
    max_connections: Option<usize>,
    /// Fail if the process ever has more threads than this [default: no bound].
    #[arg(long)]
    max_threads: Option<u64>,
    /// Fail if the process's resident memory ever exceeds this many MiB [default: no bound].
    #[arg(long)]
    max_rss_mib: Option<u64>,
    /// A mutual-TLS listener: half-header connections send half a ClientHello, newcomers shake
    /// hands first.
    #[arg(long)]
    tls: bool,
}

fn main() -> ExitCode {
    let mut args = Args::parse();
    args.max_connections = Some(
        args.max_connections
            .unwrap_or_else(|| ListenerConfig::new().max_connections()),
    );
    match siege(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("siege: {e}");
            ExitCode::FAILURE
        }
    }
}

fn siege(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    raise_fd_limit();
    let mut config =
        ListenerConfig::new().with_max_connections(args.max_connections.unwrap_or(1024));
    let pki = args.tls.then(Pki::new);
    if let Some(pki) = &pki {
        config = config.with_tls(pki.0.server.clone());
    }
    let listener: Listener = Listener::bind("127.0.0.1:0", config.clone())?;
    let server = listener.spawn_with_reply(|m, conn| {
        conn.reply(m)?;
        Ok(())
    })?;
    let addr = server.local_addr();
    println!(
        "listener on {addr}: max_connections {}, eviction grace {:?}, frame deadline {:?}",
        config.max_connections(),
        config.eviction_grace(),
        config.frame_timeout().unwrap_or_default()
    );

    let started = Instant::now();
    let half: Vec<u8> = match &pki {
        Some(pki) => {
            let hello = pki.client_hello()?;
            hello[..hello.len() / 2].to_vec() // half a ClientHello
        }
        None => vec![0, 0], // half a header
    };
    let mut held = Vec::with_capacity(args.idle + args.half_header);
    for i in 0..args.idle + args.half_header {
        let mut s = TcpStream::connect(addr)?;
        if i >= args.idle {
            s.write_all(&half)?; // then nothing
        }
        held.push(s);
    }
    println!(
        "attacker: {} connections opened in {:?} ({} idle, {} half-header)",
        held.len(),
        started.elapsed(),
        args.idle,
        args.half_header
    );
    // Past the grace period, as a real attacker's connections would be.
    thread::sleep(config.eviction_grace() + Duration::from_millis(200));
    let mut peak = report("while held", &server);

    let mut waits = Vec::with_capacity(args.clients);
    for i in 0..args.clients {
        let payload = format!("client {i}");
        let t = Instant::now();
        round_trip(addr, payload.as_bytes(), pki.as_ref())
            .map_err(|e| format!("new client {i} was not served: {e}"))?;
        waits.push(t.elapsed());
    }
    waits.sort();
    let pick = |q: f64| waits[((waits.len() - 1) as f64 * q) as usize];
    println!(
        "{} new clients served one after another: connect + request + reply in {:?} median, \
         {:?} worst",
        waits.len(),
        pick(0.5),
        pick(1.0)
    );
    let after = report("after the clients", &server);
    peak = (peak.0.max(after.0), peak.1.max(after.1));
    let stats = server.stats();
    println!(
        "closed by the listener: {} evicted, {} refused, {} frame timeouts, {} idle timeouts",
        stats.evictions, stats.connections_refused, stats.frame_timeouts, stats.idle_timeouts
    );
    let still_open = held.iter().filter(|s| !closed(s)).count();
    println!(
        "attacker's connections still open: {still_open} of {}",
        held.len()
    );
    drop(held);
    server.shutdown();
    let (threads, rss_kib) = peak;
    println!(
        "peak: {threads} threads, {} MiB resident; every new client served",
        rss_kib / 1024
    );
    if let Some(max) = args.max_threads.filter(|&max| threads > max) {
        return Err(format!("{threads} threads, over the bound of {max}").into());
    }
    if let Some(max) = args.max_rss_mib.filter(|&max| rss_kib > max * 1024) {
        return Err(format!(
            "{} MiB resident, over the bound of {max} MiB",
            rss_kib / 1024
        )
        .into());
    }
    Ok(())
}

/// Raises the soft limit on open files to the hard one: the attacker and the listener hold
/// two descriptors per connection.
fn raise_fd_limit() {
    // SAFETY: `getrlimit` and `setrlimit` only read and write the `rlimit` we pass.
    #[allow(unsafe_code)]
    unsafe {
        let mut lim = std::mem::zeroed::<libc::rlimit>();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// `--tls`: the listener's configuration and a device's, from a CA made at start.
struct Pki(MutualTls);

impl Pki {
    fn new() -> Self {
        Self(MutualTls::new("siege CA"))
    }

    fn connection(&self) -> std::io::Result<rustls::ClientConnection> {
        rustls::ClientConnection::new(self.0.client.clone(), name("localhost"))
            .map_err(std::io::Error::other)
    }

    /// The first flight of a TLS client.
    fn client_hello(&self) -> std::io::Result<Vec<u8>> {
        let mut hello = Vec::new();
        self.connection()?.write_tls(&mut hello)?;
        Ok(hello)
    }
}

/// One request and its echoed reply on a new connection (under `--tls`, after a handshake).
fn round_trip(addr: SocketAddr, payload: &[u8], pki: Option<&Pki>) -> std::io::Result<()> {
    let s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut s: Box<dyn ReadWrite> = match pki {
        Some(pki) => Box::new(rustls::StreamOwned::new(pki.connection()?, s)),
        None => Box::new(s),
    };
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    let mut frame = len.to_be_bytes().to_vec();
    frame.extend_from_slice(payload);
    s.write_all(&frame)?;
    let mut reply = vec![0u8; frame.len()];
    s.read_exact(&mut reply)?;
    if reply != frame {
        return Err(std::io::Error::other("the echo differs from the request"));
    }
    Ok(())
}

/// A stream, plain or TLS.
trait ReadWrite: Read + Write {}

impl<T: Read + Write> ReadWrite for T {}

/// Whether the listener has closed `s`, without waiting.
fn closed(s: &TcpStream) -> bool {
    if s.set_nonblocking(true).is_err() {
        return true;
    }
    let mut byte = [0u8; 1];
    match (&*s).read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    }
}

/// Prints the process's threads and resident memory (Linux), with the listener's open
/// connections; returns the threads and the resident KiB (0 where `/proc` is missing).
fn report(when: &str, server: &ListenerHandle) -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap_or("?")
            .to_string()
    };
    println!(
        "{when}: {} connections open at the listener; process: {} threads, {} kB resident",
        server.stats().connections_open,
        field("Threads:"),
        field("VmRSS:")
    );
    let number = |name: &str| field(name).parse().unwrap_or(0);
    (number("Threads:"), number("VmRSS:"))
}

//! One timed run of one peer: what every peer module gets ([`Run`]) and gives back
//! ([`Outcome`]), the meter that times the window, and the write loop they share.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::thread;
use std::time::{Duration, Instant};

use crate::progress::Progress;
use crate::{Args, Peer, buffstreams, framing, on_tokio, std_baseline};

/// One run's workload.
pub struct Run<'a> {
    pub peer: Peer,
    pub connections: usize,
    pub payload: usize,
    pub seconds: u64,
    /// Flush after every N messages (0: only when a buffer is full).
    pub flush_every: u64,
    pub batch: usize,
    pub cpu: bool,
    pub progress: &'a Progress,
}

impl<'a> Run<'a> {
    /// `peer`'s run of `args`, with its flush policy: 64 for the tokio peers (the policy a
    /// tokio user writes with `feed` + `flush`), 0 for the others, unless `--flush-every`.
    pub fn new(args: &Args, peer: Peer, seconds: u64, progress: &'a Progress) -> Self {
        let flush_every = args.flush_every.unwrap_or(match peer {
            Peer::Tokio | Peer::TokioCodec | Peer::TokioFraming | Peer::TokioRustls => 64,
            _ => 0,
        });
        Self {
            peer,
            connections: args.connections as usize,
            payload: args.payload,
            seconds,
            flush_every,
            batch: args.batch as usize,
            cpu: args.cpu,
            progress,
        }
    }

    /// Runs the peer once.
    pub fn go(&self) -> Outcome {
        match self.peer {
            Peer::Buffstreams | Peer::BuffstreamsAcked | Peer::BuffstreamsTls => {
                buffstreams::run(self)
            }
            Peer::Framing => framing::run(self),
            Peer::Tokio | Peer::TokioCodec | Peer::TokioFraming | Peer::TokioRustls => {
                on_tokio::run(self)
            }
            Peer::StdBaseline | Peer::StdPrebuilt => std_baseline::run(self),
            Peer::All | Peer::Raw | Peer::Writer | Peer::WriterSend | Peer::WriterReply => {
                unreachable!("not a throughput peer")
            }
        }
    }

    /// Prints the live rate once a second until the run's time is up, then sets `stop`;
    /// returns the messages counted in the window and its length.
    pub fn meter(&self, received: impl Fn() -> u64, stop: &AtomicBool) -> (u64, Duration) {
        let start = Instant::now();
        let mut last = (0u64, start);
        for _ in 0..self.seconds {
            thread::sleep(Duration::from_secs(1));
            let now = (received(), Instant::now());
            let rate = (now.0 - last.0) as f64 / (now.1 - last.1).as_secs_f64();
            self.progress.advance(now.1 - last.1);
            self.progress.line(format!(
                "  {:<14} {:>7.3} M msgs/s {:>9.1} MB/s",
                self.peer.name(),
                rate / 1e6,
                rate * self.payload as f64 / 1e6
            ));
            last = now;
        }
        let counted = received();
        let elapsed = start.elapsed();
        if self.cpu {
            cpu_report(counted);
        }
        stop.store(true, Relaxed);
        (counted, elapsed)
    }
}

/// What a throughput run measured.
pub struct Outcome {
    /// Messages received during the timed window.
    pub in_window: u64,
    pub elapsed: Duration,
    /// Messages written and received in all (after the drain), and size mismatches.
    pub sent: u64,
    pub received: u64,
    pub mismatches: u64,
}

impl Outcome {
    /// Every message written arrived, with the right size.
    pub fn ok(&self) -> bool {
        self.mismatches == 0 && self.sent == self.received
    }

    /// Messages per second in the window.
    pub fn rate(&self) -> f64 {
        self.in_window as f64 / self.elapsed.as_secs_f64()
    }
}

/// Waits (bounded) until `received()` reaches `sent`.
pub fn drain(received: impl Fn() -> u64, sent: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    while received() < sent && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(5));
    }
    received()
}

/// The write loop every peer shares: `write` one message at a time until `stop`, `flush`
/// every `flush_every` messages (0: only at the end); returns the messages written.
pub fn pump<W>(
    w: &mut W,
    stop: &AtomicBool,
    flush_every: u64,
    mut write: impl FnMut(&mut W),
    mut flush: impl FnMut(&mut W),
) -> u64 {
    let mut n = 0u64;
    while !stop.load(Relaxed) {
        for _ in 0..256 {
            write(w);
            n += 1;
            if flush_every > 0 && n.is_multiple_of(flush_every) {
                flush(w);
            }
        }
    }
    flush(w);
    n
}

/// `--cpu`: CPU time per message of every busy thread so far, from `/proc` (Linux; clock
/// ticks of 10 ms, so runs of a few seconds give about 1 % precision). The sending thread's
/// figure is what bounds the throughput on two cores.
fn cpu_report(messages: u64) {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return;
    };
    let ticks_ns = 1e9 / 100.0; // USER_HZ
    for task in tasks.flatten() {
        let path = task.path();
        let name = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        let stat = std::fs::read_to_string(path.join("stat")).unwrap_or_default();
        // Fields after the parenthesised name; utime and stime are the 12th and 13th.
        let fields: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        let tick = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        let (user, sys) = (tick(11), tick(12));
        if user + sys > 0.0 && messages > 0 {
            eprintln!(
                "  cpu {:<16} user {:>5.1} ns/msg  sys {:>5.1} ns/msg",
                name.trim(),
                user * ticks_ns / messages as f64,
                sys * ticks_ns / messages as f64
            );
        }
    }
}

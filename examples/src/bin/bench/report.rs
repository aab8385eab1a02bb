//! Runs the throughput peers and reports them: one peer prints a summary line (or one JSON
//! object); several run side by side in rounds and end with one table of medians and
//! per-round ratios to the std baseline and to tokio-util (and tokio-rustls, when it ran).

use std::process::ExitCode;
use std::time::Duration;

use crate::progress::Progress;
use crate::runner::{Outcome, Run};
use crate::{Args, Peer};

/// Runs `peers` on `args`' workload and prints the result; fails if any message was lost
/// or had the wrong size.
pub fn run(args: &Args, peers: &[Peer]) -> ExitCode {
    if let [peer] = peers
        && !args.markdown
    {
        return single(args, *peer);
    }
    side_by_side(args, peers)
}

fn failed(peer: Peer, outcome: &Outcome) -> ExitCode {
    eprintln!(
        "FAILED: {}: {} sent, {} received, {} size mismatches",
        peer.name(),
        outcome.sent,
        outcome.received,
        outcome.mismatches
    );
    ExitCode::FAILURE
}

fn single(args: &Args, peer: Peer) -> ExitCode {
    let seconds = args.seconds.unwrap_or(5);
    let progress = Progress::new(Duration::from_secs(seconds), args.json);
    progress.stage(peer.name());
    let run = Run::new(args, peer, seconds, &progress);
    let outcome = run.go();
    progress.finish();
    let rate = outcome.rate();
    let mb = rate * args.payload as f64 / 1e6;
    if args.json {
        println!(
            "{{\"peer\":\"{}\",\"connections\":{},\"payload\":{},\"flush_every\":{},\"batch\":{},\"msgs_per_sec\":{:.0},\"mb_per_sec\":{:.1},\"ok\":{}}}",
            peer.name(),
            args.connections,
            args.payload,
            run.flush_every,
            args.batch,
            rate,
            mb,
            outcome.ok()
        );
    } else {
        println!(
            "summary: peer={} connections={} payload={}B flush_every={}: {:.3} M msgs/s, {:.1} MB/s ({} sent, {} received, {} size mismatches)",
            peer.name(),
            args.connections,
            args.payload,
            run.flush_every,
            rate / 1e6,
            mb,
            outcome.sent,
            outcome.received,
            outcome.mismatches
        );
    }
    if outcome.ok() {
        ExitCode::SUCCESS
    } else {
        failed(peer, &outcome)
    }
}

/// The dated markdown table: the command, the machine and its state, then per peer the
/// median rate with the range over the rounds, MB/s, and the per-round ratios.
fn markdown(
    args: &Args,
    names: &[String],
    rates: &[Vec<f64>],
    bases: &[usize],
    load: &str,
    state: f64,
) {
    let command: Vec<String> = std::env::args().skip(1).collect();
    println!(
        "`bench {}`, {} ({} B messages, {} connection(s), {} round(s) of {} s):",
        command.join(" "),
        humantime::format_rfc3339_seconds(std::time::SystemTime::now()),
        args.payload,
        args.connections,
        args.rounds,
        args.seconds.unwrap_or(2),
    );
    println!(
        "{}; load average {} before the run; std-baseline at {:.1} M msgs/s in this run (the \
         machine's state: compare within one run)\n",
        machine::describe(),
        load,
        state / 1e6,
    );
    let mut head = String::from("| peer | M msgs/s (median, range) | MB/s |");
    let mut rule = String::from("|---|---|---|");
    for &b in bases {
        head += &format!(" vs {} |", names[b]);
        rule += "---|";
    }
    println!("{head}\n{rule}");
    for (i, name) in names.iter().enumerate() {
        let rate = median(rates[i].clone());
        let (lo, hi) = rates[i]
            .iter()
            .fold((f64::MAX, 0.0f64), |(lo, hi), &r| (lo.min(r), hi.max(r)));
        let mut line = format!(
            "| `{name}` | {:.1} ({:.1}–{:.1}) | {:.0} |",
            rate / 1e6,
            lo / 1e6,
            hi / 1e6,
            rate * args.payload as f64 / 1e6
        );
        for &b in bases {
            let ratio = median(
                rates[i]
                    .iter()
                    .zip(&rates[b])
                    .map(|(a, b)| a / b.max(1.0))
                    .collect(),
            );
            line += &format!(" {ratio:.2}× |");
        }
        println!("{line}");
    }
}

/// What the machine is and how busy it was.
mod machine {
    /// The CPU model and the CPUs this process may use.
    pub fn describe() -> String {
        let model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, m)| m.trim().to_string())
            })
            .unwrap_or_else(|| std::env::consts::ARCH.to_string());
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        format!("{model}, {cpus} CPU(s), {}", std::env::consts::OS)
    }

    /// The 1-minute load average (Linux), or "unknown".
    pub fn load() -> String {
        std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|s| s.split_whitespace().next().map(str::to_string))
            .unwrap_or_else(|| "unknown".into())
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// Each peer in turn, `--rounds` times (a round runs every peer back to back, so they share
/// the machine's state), then the median rate of each and its per-round ratio to the first
/// peer and to tokio-util.
fn side_by_side(args: &Args, peers: &[Peer]) -> ExitCode {
    let seconds = args.seconds.unwrap_or(2);
    let rounds = args.rounds;
    // Without std-baseline among the peers, one more second measures the machine's state.
    let probe = u64::from(!peers.contains(&Peer::StdBaseline));
    let total = rounds * peers.len() as u64 * seconds + probe;
    let names: Vec<String> = peers.iter().map(|p| p.name()).collect();
    if !args.json && !args.markdown {
        println!(
            "side by side: {}; {rounds} round(s) of {seconds} s each, {} B messages, {} connection(s): about {total} s",
            names.join(", "),
            args.payload,
            args.connections,
        );
    }
    let progress = Progress::new(Duration::from_secs(total), args.json);
    let load_before = machine::load();
    let mut rates = vec![Vec::new(); peers.len()];
    for round in 1..=rounds {
        for (i, &peer) in peers.iter().enumerate() {
            progress.stage(format!("round {round}/{rounds} · {}", peer.name()));
            let outcome = Run::new(args, peer, seconds, &progress).go();
            if !outcome.ok() {
                progress.finish();
                return failed(peer, &outcome);
            }
            rates[i].push(outcome.rate());
        }
    }
    // The machine's state: the std baseline's rate in this run, from its rounds or, when it
    // was not asked for, from one short run of it now (same messages and connections).
    let state = match peers.iter().position(|&p| p == Peer::StdBaseline) {
        Some(i) => median(rates[i].clone()),
        None => {
            progress.stage("the machine's state · std-baseline".to_string());
            let probe = Run::new(args, Peer::StdBaseline, 1, &progress).go();
            probe.rate()
        }
    };
    progress.finish();
    // Ratios to the first peer, and to tokio-util (and tokio-rustls) when it ran and is not
    // the first.
    let mut bases = vec![0];
    for reference in [Peer::Tokio, Peer::TokioRustls] {
        if let Some(t) = peers
            .iter()
            .position(|&p| p == reference)
            .filter(|&t| t != 0)
        {
            bases.push(t);
        }
    }
    let ratio = |i: usize, base: usize| {
        median(
            rates[i]
                .iter()
                .zip(&rates[base])
                .map(|(a, b)| a / b.max(1.0))
                .collect(),
        )
    };
    if args.markdown {
        markdown(args, &names, &rates, &bases, &load_before, state);
        return ExitCode::SUCCESS;
    }
    if !args.json {
        let mut head = format!("{:<16} {:>10} {:>10}", "peer", "M msgs/s", "MB/s");
        for &b in &bases {
            head += &format!(" {:>18}", format!("vs {}", names[b]));
        }
        println!("{head}");
    }
    for (i, name) in names.iter().enumerate() {
        let rate = median(rates[i].clone());
        let mb = rate * args.payload as f64 / 1e6;
        if args.json {
            let ratios: Vec<String> = bases
                .iter()
                .map(|&b| format!("\"vs_{}\":{:.3}", names[b], ratio(i, b)))
                .collect();
            println!(
                "{{\"peer\":\"{name}\",\"rounds\":{rounds},\"msgs_per_sec\":{rate:.0},\"mb_per_sec\":{mb:.1},{},\"std_baseline_msgs_per_sec\":{state:.0}}}",
                ratios.join(",")
            );
        } else {
            let mut line = format!("{:<16} {:>10.2} {:>10.1}", name, rate / 1e6, mb);
            for &b in &bases {
                line += &format!(" {:>17.2}x", ratio(i, b));
            }
            println!("{line}");
        }
    }
    if !args.json {
        println!("(medians of {rounds} round(s); ratios are per-round medians)");
        println!(
            "(the machine's state: std-baseline at {:.1} M msgs/s in this run; figures compare within one run)",
            state / 1e6
        );
    }
    ExitCode::SUCCESS
}

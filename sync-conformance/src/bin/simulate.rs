//! `simulate`: runs the deterministic simulator over many seeds.
//!
//! ```text
//! cargo run --release -p sync-conformance --bin simulate -- --seeds N [--seed S] [--nodes K] [--ops M] [--start S0] [--no-determinism] [--watch ID-PREFIX] [--stats]
//! ```
//!
//! `--seeds N` runs seeds `S0..S0+N` (`--start`, default 0); `--seed S` runs
//! one seed and prints its statistics. Seeds run in parallel on every core
//! (each seed on its own is single-threaded and deterministic). Every seed is run twice to check
//! determinism unless `--no-determinism`. A failing seed prints its
//! violations and the command to replay it. `--watch` prints the history of
//! the entities whose id starts with the prefix (use it with `--seed`);
//! `--stats` prints every seed's faults and counts. The
//! last line is always
//! `simulated N seeds: V violations`.

use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use sync_conformance::sim::{self, DEFAULT_NODES, DEFAULT_OPS, SimConfig, SimReport};

/// How many finished seeds between two progress lines on standard error.
const PROGRESS_EVERY: usize = 100;

struct Args {
    seeds: u64,
    start: u64,
    single: Option<u64>,
    nodes: usize,
    ops: usize,
    determinism: bool,
    watch: Option<String>,
    stats: bool,
}

fn main() -> ExitCode {
    let args = match parse(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            eprintln!(
                "usage: simulate --seeds N [--seed S] [--start S0] [--nodes K] [--ops M] [--no-determinism] [--watch ID-PREFIX] [--stats]"
            );
            return ExitCode::from(2);
        }
    };
    let seeds: Vec<u64> = match args.single {
        Some(seed) => vec![seed],
        None => (args.start..args.start + args.seeds).collect(),
    };
    let started = Instant::now();
    let reports = run_all(&seeds, &args, started);
    let mut violations = 0;
    for report in &reports {
        if args.single.is_some() || args.stats {
            print_stats(report);
        }
        if !report.passed() {
            violations += report.violations.len();
            println!("{}", report.failure());
        }
    }
    eprintln!("took {:.1}s", started.elapsed().as_secs_f64());
    println!("simulated {} seeds: {violations} violations", seeds.len());
    if violations == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Runs the seeds on every core (each seed alone is single-threaded and
/// deterministic); reports come back in seed order.
///
/// While it runs, a failing seed is reported on standard error as soon as it
/// fails, and progress is printed there every [`PROGRESS_EVERY`] seeds, so a
/// long run shows its state before it ends.
fn run_all(seeds: &[u64], args: &Args, started: Instant) -> Vec<SimReport> {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let next = AtomicUsize::new(0);
    let finished = AtomicUsize::new(0);
    let failed = AtomicUsize::new(0);
    let mut reports: Vec<(usize, SimReport)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers.min(seeds.len()).max(1))
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let index = next.fetch_add(1, Ordering::Relaxed);
                        let Some(&seed) = seeds.get(index) else {
                            return done;
                        };
                        let report = run_one(seed, args);
                        if !report.passed() {
                            failed.fetch_add(1, Ordering::Relaxed);
                            eprintln!("{}", report.failure());
                        }
                        let count = finished.fetch_add(1, Ordering::Relaxed) + 1;
                        if count % PROGRESS_EVERY == 0 && count < seeds.len() {
                            eprintln!(
                                "{count}/{} seeds done, {} failed, {:.0}s",
                                seeds.len(),
                                failed.load(Ordering::Relaxed),
                                started.elapsed().as_secs_f64()
                            );
                        }
                        done.push((index, report));
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| match h.join() {
                Ok(done) => done,
                Err(panic) => std::panic::resume_unwind(panic),
            })
            .collect()
    });
    reports.sort_by_key(|(index, _)| *index);
    reports.into_iter().map(|(_, report)| report).collect()
}

fn run_one(seed: u64, args: &Args) -> SimReport {
    let config = SimConfig::new(seed).nodes(args.nodes).ops(args.ops);
    if let Some(prefix) = &args.watch {
        sim::run_watched(config, prefix)
    } else if args.determinism {
        sim::check_determinism(config)
    } else {
        sim::run(config)
    }
}

fn print_stats(report: &SimReport) {
    println!("seed {}: {:?}", report.config.seed, report.faults);
    println!("  {:?}", report.stats);
    println!(
        "  state {:016x} trace {:016x}",
        report.state_hash, report.trace_hash
    );
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut parsed = Args {
        seeds: 100,
        start: 0,
        single: None,
        nodes: DEFAULT_NODES,
        ops: DEFAULT_OPS,
        determinism: true,
        watch: None,
        stats: false,
    };
    while let Some(flag) = args.next() {
        let mut value = |name: &str| -> Result<u64, String> {
            let text = args.next().ok_or(format!("{name} needs a value"))?;
            text.parse()
                .map_err(|_| format!("{name} takes a number, not {text:?}"))
        };
        match flag.as_str() {
            "--seeds" => parsed.seeds = value("--seeds")?,
            "--start" => parsed.start = value("--start")?,
            "--seed" => parsed.single = Some(value("--seed")?),
            "--nodes" => parsed.nodes = value("--nodes")?.max(1) as usize,
            "--ops" => parsed.ops = value("--ops")? as usize,
            "--no-determinism" => parsed.determinism = false,
            "--stats" => parsed.stats = true,
            "--watch" => parsed.watch = Some(args.next().ok_or("--watch needs an id prefix")?),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(parsed)
}

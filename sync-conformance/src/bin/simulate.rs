//! `simulate`: runs the deterministic simulator over many seeds.
//!
//! ```text
//! cargo run --release -p sync-conformance --bin simulate -- --seeds N [--seed S] [--nodes K] [--ops M] [--start S0] [--no-determinism] [--watch ID-PREFIX] [--stats] [--scopes]
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

use clap::Parser;
use sync_conformance::sim::{self, DEFAULT_NODES, DEFAULT_OPS, SimConfig, SimReport};

/// How many finished seeds between two progress lines on standard error.
const PROGRESS_EVERY: usize = 100;

/// Runs the deterministic network simulator over many seeds: a hub and
/// nodes on memory stores under loss, duplication, reordering, corruption,
/// partitions, crashes, restores from backup and clock skew. Each seed
/// checks convergence, no lost acknowledged write, no double apply and
/// causality; a failing seed prints its violations and the command that
/// replays it.
#[derive(Parser, Debug)]
#[command(
    name = "simulate",
    after_help = "Examples:\n  cargo run --release -p sync-conformance --bin simulate -- --seeds 1000\n  cargo run --release -p sync-conformance --bin simulate -- --seeds 10000 --nodes 4 --ops 1000\nreplay one seed with its statistics, then follow one entity through it:\n  cargo run --release -p sync-conformance --bin simulate -- --seed 8\n  cargo run --release -p sync-conformance --bin simulate -- --seed 8 --watch d7db3705\n\nThe last line is always `simulated N seeds: V violations`; the exit code is non-zero when V > 0."
)]
struct Args {
    /// How many seeds to run, from --start.
    #[arg(long, default_value_t = 100, value_name = "N")]
    seeds: u64,
    /// The first seed.
    #[arg(long, default_value_t = 0, value_name = "S0")]
    start: u64,
    /// Run only this seed and print its statistics.
    #[arg(long = "seed", value_name = "S")]
    single: Option<u64>,
    /// Nodes besides the hub (at least 1).
    #[arg(long, default_value_t = DEFAULT_NODES, value_name = "K")]
    nodes: usize,
    /// Operations per seed.
    #[arg(long, default_value_t = DEFAULT_OPS, value_name = "M")]
    ops: usize,
    /// Skip the determinism check (each seed otherwise runs twice and must
    /// give the same trace).
    #[arg(long = "no-determinism", action = clap::ArgAction::SetFalse)]
    determinism: bool,
    /// Print the history of the entities whose id starts with this prefix
    /// (use with --seed).
    #[arg(long, value_name = "ID-PREFIX")]
    watch: Option<String>,
    /// Print every seed's faults and counts.
    #[arg(long)]
    stats: bool,
    /// Per-node scopes on: a type scoped per user, nodes of two users, and
    /// the scope checks (no node applies another user's row).
    #[arg(long)]
    scopes: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
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
    let config = SimConfig::new(seed)
        .nodes(args.nodes.max(1))
        .ops(args.ops)
        .scopes(args.scopes);
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

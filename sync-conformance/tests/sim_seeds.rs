//! The simulator over many seeds, as part of `cargo test`.
//!
//! `SYNCPLAN_SIM_SEEDS` sets how many seeds (default 200, starting at
//! `SYNCPLAN_SIM_START`, default 0) and `SYNCPLAN_SIM_OPS` the workload
//! operations per seed (default 400; the `simulate` binary defaults to
//! 1,000). The seeds are split over four tests so they run in parallel. A
//! failure prints each failing seed with the command that replays it. No
//! seed is skipped: a failing seed is fixed, then kept in
//! `sim_regressions.rs`.

use sync_conformance::sim::{self, SimConfig};

const PARTS: u64 = 4;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn sweep(part: u64) {
    let start = env("SYNCPLAN_SIM_START", 0);
    let seeds = env("SYNCPLAN_SIM_SEEDS", 200);
    let ops = env("SYNCPLAN_SIM_OPS", 400) as usize;
    let failures: Vec<String> = (start..start + seeds)
        .filter(|seed| seed % PARTS == part)
        .map(|seed| sim::run(SimConfig::new(seed).ops(ops)))
        .filter(|report| !report.passed())
        .map(|report| report.failure())
        .collect();
    assert!(failures.is_empty(), "\n{}", failures.join("\n\n"));
}

#[test]
fn seeds_0_mod_4() {
    sweep(0);
}

#[test]
fn seeds_1_mod_4() {
    sweep(1);
}

#[test]
fn seeds_2_mod_4() {
    sweep(2);
}

#[test]
fn seeds_3_mod_4() {
    sweep(3);
}

/// Seeds with per-node scopes on (`SimConfig::scopes`): two users' devices
/// on one hub, memos scoped by owner. `SYNCPLAN_SIM_SCOPED_SEEDS` sets how
/// many (default 60, from `SYNCPLAN_SIM_START`); `simulate --scopes` runs
/// more.
#[test]
fn scoped_seeds() {
    let start = env("SYNCPLAN_SIM_START", 0);
    let seeds = env("SYNCPLAN_SIM_SCOPED_SEEDS", 60);
    let ops = env("SYNCPLAN_SIM_OPS", 400) as usize;
    let failures: Vec<String> = (start..start + seeds)
        .map(|seed| sim::run(SimConfig::new(seed).ops(ops).scopes(true)))
        .filter(|report| !report.passed())
        .map(|report| report.failure())
        .collect();
    assert!(failures.is_empty(), "\n{}", failures.join("\n\n"));
}

/// The same seed twice gives the same final state and the same trace.
#[test]
fn same_seed_same_run() {
    for seed in 1_000..1_004 {
        let report = sim::check_determinism(SimConfig::new(seed).ops(200));
        assert!(report.passed(), "{}", report.failure());
    }
    let report = sim::check_determinism(SimConfig::new(1_004).ops(200).scopes(true));
    assert!(report.passed(), "{}", report.failure());
}

//! `syncplan bench`: how fast syncplan is on this machine, against the
//! machine's own ceiling measured in the same run (a plain SQLite upsert of
//! the same rows, one transaction, one prepared statement).
//!
//! Everything runs on temporary files. The phases, in order:
//!
//! 1. the ceiling, and the plain writes that capture is compared with
//!    (inserts and updates of an untracked table of the same shape, with
//!    the same defaults and key index);
//! 2. end to end in-process: N rows inserted with plain SQL on a node's
//!    tracked table, synced to a hub's SQLite store (`synchronous = FULL`),
//!    every byte through the real encode, compress, hash and decode; the
//!    time from the first write to the hub's last commit. The time the hub
//!    spends in `respond` is the apply figure;
//! 3. the same N rows updated with plain SQL (capture of `UPDATE`);
//! 4. first sync of a fresh node from the hub, now holding N entities;
//! 5. 1,000 exchanges with nothing to send;
//! 6. with `--transport https`, phases 2, 4 and 5 again over HTTPS on
//!    127.0.0.1 (a self-signed certificate the node pins), fresh databases.
//!
//! One `key=value` line per figure on standard output; a progress bar on
//! standard error.

mod https;
mod inprocess;
mod workload;

use std::time::{Duration, Instant};

use clap::ValueEnum;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::failure::{Context, Result};

/// Where the end-to-end, first-sync and idle phases send their bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BenchTransport {
    /// Engine to engine in one process (bytes through the real codec).
    InProcess,
    /// HTTPS on 127.0.0.1 through the hub server and the node driver.
    Https,
}

/// Runs every phase with `changes` rows (and `idle` exchanges with
/// nothing to send) and prints the figures.
pub fn run(changes: usize, transport: BenchTransport, idle: usize) -> Result<()> {
    if changes == 0 || idle == 0 {
        return Err(super::failure::Failure::msg(
            "--changes and --idle must be at least 1",
        ));
    }
    let dir = tempfile::tempdir().context("creating a temporary directory for the bench")?;
    let progress = Progress::new(changes);
    let mut out = Figures::default();
    out.text("transport", transport_name(transport));
    out.int("changes", changes as u64);

    let ceiling = workload::ceiling(dir.path(), changes, &progress)?;
    let plain = workload::plain_writes(dir.path(), changes, &progress)?;
    out.ms("ceiling_ms", ceiling);
    out.rate("ceiling_rows_per_s", changes, ceiling);

    let local = inprocess::run(dir.path(), changes, idle, &progress)?;
    out.ratio("capture_insert_x", local.capture_insert, plain.insert);
    out.ratio("capture_update_x", local.capture_update, plain.update);
    out.ratio(
        "capture_update_with_stamp_x",
        local.capture_update + local.stamp,
        plain.update,
    );
    out.ratio("apply_x", local.hub_respond, ceiling);
    out.rate("apply_changes_per_s", changes, local.hub_respond);
    out.bytes_per("wire_bytes_per_change", local.wire_bytes, changes);
    out.bytes_per("gzip_json_bytes_per_change", local.gzip_json_bytes, changes);
    out.float(
        "wire_vs_gzip_json",
        local.wire_bytes as f64 / local.gzip_json_bytes.max(1) as f64,
    );
    let https_figures;
    let shown = match transport {
        BenchTransport::InProcess => &local.transported,
        BenchTransport::Https => {
            out.rate(
                "inprocess_e2e_changes_per_s",
                changes,
                local.transported.e2e,
            );
            out.ratio(
                "inprocess_ratio_vs_sqlite_upsert",
                local.transported.e2e,
                ceiling,
            );
            out.rate(
                "inprocess_first_sync_entities_per_s",
                changes,
                local.transported.first_sync,
            );
            let over_https = https::run(dir.path(), changes, idle, &progress)?;
            out.micros("https_idle_session_p50_us", over_https.idle.p50);
            out.micros("https_idle_session_p99_us", over_https.idle.p99);
            https_figures = over_https;
            &https_figures
        }
    };
    out.ms("e2e_ms", shown.e2e);
    out.rate("e2e_changes_per_s", changes, shown.e2e);
    out.ratio("ratio_vs_sqlite_upsert", shown.e2e, ceiling);
    out.rate("first_sync_entities_per_s", changes, shown.first_sync);
    out.ratio("first_sync_vs_sqlite_upsert", shown.first_sync, ceiling);
    // At the hub: its time to answer a request with nothing to send.
    out.micros("idle_exchange_p50_us", local.transported.idle.p50);
    out.micros("idle_exchange_p99_us", local.transported.idle.p99);
    out.micros(
        "idle_roundtrip_p99_us",
        local.transported.idle.roundtrip_p99,
    );
    out.float("peak_rss_mb", peak_rss_kib() as f64 / 1024.0);
    progress.bar.finish_and_clear();
    out.print();
    Ok(())
}

/// The figures that depend on the transport.
pub struct Transported {
    /// First write to the hub's last commit.
    pub e2e: Duration,
    /// A fresh node's first sync of every entity.
    pub first_sync: Duration,
    /// Exchanges with nothing to send.
    pub idle: Idle,
}

/// Latencies of exchanges with nothing to send.
pub struct Idle {
    /// Median time at the hub (in-process) or of the request (HTTPS).
    pub p50: Duration,
    /// 99th percentile, the same.
    pub p99: Duration,
    /// 99th percentile of the whole exchange, both sides' work included.
    pub roundtrip_p99: Duration,
}

/// How many exchanges the idle phase runs by default.
pub const IDLE_EXCHANGES: usize = 1_000;

/// The `q`-quantile (0..=1) of `samples`, sorting them.
pub fn quantile(samples: &mut [Duration], q: f64) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    samples.sort_unstable();
    let rank = ((samples.len() - 1) as f64 * q).round() as usize;
    samples[rank.min(samples.len() - 1)]
}

fn transport_name(t: BenchTransport) -> &'static str {
    match t {
        BenchTransport::InProcess => "in-process",
        BenchTransport::Https => "https",
    }
}

/// The progress bar on standard error: one phase at a time.
pub struct Progress {
    bar: ProgressBar,
    changes: u64,
}

impl Progress {
    fn new(changes: usize) -> Self {
        let bar = ProgressBar::with_draw_target(Some(changes as u64), ProgressDrawTarget::stderr());
        if let Ok(style) =
            ProgressStyle::with_template("{msg:>28} [{bar:30}] {pos}/{len} {elapsed_precise}")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        Progress {
            bar,
            changes: changes as u64,
        }
    }

    /// A bar that draws nothing (for inner loops of a phase).
    pub fn hidden() -> Self {
        Progress {
            bar: ProgressBar::hidden(),
            changes: 0,
        }
    }

    /// Starts a phase of `len` steps (`None`: the number of changes).
    pub fn phase(&self, name: &'static str, len: Option<u64>) {
        self.bar.set_message(name);
        self.bar.set_length(len.unwrap_or(self.changes));
        self.bar.set_position(0);
    }

    /// Moves the current phase forward by `n` steps, up to its end.
    pub fn inc(&self, n: u64) {
        let len = self.bar.length().unwrap_or(u64::MAX);
        self.bar.set_position((self.bar.position() + n).min(len));
    }
}

/// The `key=value` lines, in order.
#[derive(Default)]
struct Figures {
    lines: Vec<(String, String)>,
}

impl Figures {
    fn text(&mut self, key: &str, value: &str) {
        self.lines.push((key.to_owned(), value.to_owned()));
    }

    fn int(&mut self, key: &str, value: u64) {
        self.lines.push((key.to_owned(), value.to_string()));
    }

    fn float(&mut self, key: &str, value: f64) {
        self.lines.push((key.to_owned(), format!("{value:.2}")));
    }

    fn ms(&mut self, key: &str, d: Duration) {
        self.lines
            .push((key.to_owned(), format!("{:.1}", d.as_secs_f64() * 1e3)));
    }

    fn micros(&mut self, key: &str, d: Duration) {
        self.lines
            .push((key.to_owned(), format!("{:.0}", d.as_secs_f64() * 1e6)));
    }

    fn rate(&mut self, key: &str, n: usize, d: Duration) {
        let per_s = n as f64 / d.as_secs_f64().max(1e-9);
        self.lines.push((key.to_owned(), format!("{per_s:.0}")));
    }

    fn ratio(&mut self, key: &str, d: Duration, base: Duration) {
        self.float(key, d.as_secs_f64() / base.as_secs_f64().max(1e-9));
    }

    fn bytes_per(&mut self, key: &str, bytes: u64, n: usize) {
        self.float(key, bytes as f64 / n.max(1) as f64);
    }

    fn print(&self) {
        for (key, value) in &self.lines {
            println!("{key}={value}");
        }
    }
}

/// Times `f`.
pub fn timed<T>(f: impl FnOnce() -> Result<T>) -> Result<(T, Duration)> {
    let start = Instant::now();
    let value = f()?;
    Ok((value, start.elapsed()))
}

/// The process's peak resident set (`VmHWM`), in KiB; 0 where the system
/// does not say.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_pick_by_rank() {
        let mut samples: Vec<Duration> = (1..=100).rev().map(Duration::from_micros).collect();
        assert_eq!(quantile(&mut samples, 0.5), Duration::from_micros(51));
        assert_eq!(quantile(&mut samples, 0.99), Duration::from_micros(99));
        assert_eq!(quantile(&mut [], 0.99), Duration::ZERO);
    }
}

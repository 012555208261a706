//! `sync`: one session with the hub over HTTPS, with a progress bar on
//! large syncs and a one-line summary; `sync --watch`: continuous, with
//! live push.

use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value as Json, json};
use syncplan::http::{ClientConfig, HttpTransport, Trust};
use syncplan::{
    AutoSync, ConflictSide, DriverError, Event, Node, NodeConfig, NodeId, SessionEvent,
    SqliteStore, SyncReport,
};

use super::failure::{Context, Failure, Result};
use super::layout::{Opened, TOKEN_META};
use super::output::Output;
use super::serve::stopped;

/// Sessions with at least this many changes to move get a progress bar.
const LARGE: u64 = 1_000;

/// How `sync` runs.
pub struct SyncArgs {
    /// Keep syncing until Ctrl-C.
    pub watch: bool,
    /// Time between sessions in watch mode.
    pub interval: Duration,
    /// Failed exchanges per session before giving up.
    pub attempts: u32,
    /// The hub's URL, instead of the configured one.
    pub url: Option<String>,
}

type CliNode = Node<SqliteStore>;

/// `sync` in the node's directory `dir`.
pub async fn sync(dir: &std::path::Path, args: SyncArgs, out: &Output) -> Result<()> {
    let mut opened = Opened::open(dir)?;
    let (transport, hub) = connect(&mut opened, args.url.as_deref())?;
    let transport = Arc::new(transport);
    let node = Node::builder_shared(opened.engine, hub, transport.clone())
        .push(transport.clone())
        .config(NodeConfig::default().max_attempts(args.attempts))
        .apply_migrations()
        .build();
    let saved = transport.token();
    let result = if args.watch {
        watch(&node, &transport, &args, out).await
    } else {
        once(&node, out).await
    };
    keep_token(&node, &transport, &saved).await?;
    result
}

/// A transport to the node's hub, trusting its certificate as the
/// credentials say, authenticating with the node's token.
pub fn connect(opened: &mut Opened, url: Option<&str>) -> Result<(HttpTransport, NodeId)> {
    let upstream = opened.config.upstream(&opened.dir)?.clone();
    let token = opened
        .engine
        .meta(TOKEN_META)?
        .and_then(|t| String::from_utf8(t).ok())
        .ok_or_else(|| {
            Failure::msg(
                "this node has no token; set it up again with `syncplan init` and the credentials `syncplan node add` printed",
            )
        })?;
    let trust = match (&upstream.fingerprint, &upstream.ca_file) {
        (Some(fingerprint), _) => {
            Trust::pinned(fingerprint).context("reading the hub's fingerprint")?
        }
        (None, Some(ca)) => {
            let path = opened.dir.join(ca);
            let pem =
                std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            Trust::roots_from_pem(&pem).context("reading the hub's CA certificate")?
        }
        (None, None) => Trust::WebPki,
    };
    let url = url.unwrap_or(&upstream.url);
    let transport = HttpTransport::new(url, token, ClientConfig::default().trust(trust))
        .with_context(|| format!("connecting to the hub at {url}"))?;
    Ok((transport, upstream.id))
}

/// Keeps the newest token the hub handed out, so the next run uses it.
async fn keep_token(node: &CliNode, transport: &HttpTransport, saved: &str) -> Result<()> {
    let token = transport.token();
    if token != saved {
        node.with_engine(move |e| e.put_meta(TOKEN_META, Some(token.as_bytes())))
            .await?
            .context("keeping the token the hub renewed")?;
    }
    Ok(())
}

async fn once(node: &CliNode, out: &Output) -> Result<()> {
    let mut progress = Progress::new(out.json);
    let result = node.sync_with(|event| progress.update(event)).await;
    progress.finish();
    let report = result.map_err(explain)?;
    out.emit(&report_json(&report), || report.summary())
}

async fn watch(
    node: &CliNode,
    transport: &Arc<HttpTransport>,
    args: &SyncArgs,
    out: &Output,
) -> Result<()> {
    let schedule = AutoSync::default().interval(args.interval);
    // Renewed tokens are kept as they come, not only at the end.
    let keeper = {
        let node = node.clone();
        let mut updates = transport.token_updates();
        tokio::spawn(async move {
            while updates.changed().await.is_ok() {
                let token = updates.borrow_and_update().clone();
                let kept = node
                    .with_engine(move |e| e.put_meta(TOKEN_META, Some(token.as_bytes())))
                    .await;
                if let Err(e) | Ok(Err(e)) = kept.map(|r| r.map_err(DriverError::from)) {
                    tracing::warn!(error = %e, "could not keep the renewed token");
                }
            }
        })
    };
    if !out.json {
        println!(
            "syncing every {}s and whenever the hub has news; Ctrl-C stops",
            args.interval.as_secs()
        );
    }
    let json = out.json;
    let result = node
        .auto_sync(
            schedule,
            async {
                // A failure to listen for signals leaves only the process kill.
                let _ = stopped().await;
            },
            move |result| match result {
                Ok(report) if json => println!("{}", report_json(report)),
                Ok(report) => println!("{}", report.summary()),
                Err(e) if json => println!("{}", json!({ "error": e.to_string() })),
                Err(e) => println!("sync failed, trying again later: {e}"),
            },
        )
        .await;
    keeper.abort();
    result.map_err(explain)
}

/// The failure, under what was being done (its message says what to do).
fn explain(error: DriverError) -> Failure {
    Err::<(), _>(error).context("sync failed").unwrap_err()
}

/// The report as JSON.
pub fn report_json(report: &SyncReport) -> Json {
    let conflicts: Vec<Json> = report
        .conflicts
        .iter()
        .map(|c| {
            json!({
                "entity": c.key.to_string(),
                "strategy": c.strategy,
                "winner": match c.winner {
                    ConflictSide::Local => "local",
                    ConflictSide::Incoming => "incoming",
                    ConflictSide::Merged => "merged",
                },
                "version_record": c.version_record.map(|id| id.to_string()),
            })
        })
        .collect();
    json!({
        "complete": report.complete,
        "sent": report.sent,
        "received": report.received,
        "applied": report.applied,
        "conflicts": conflicts,
        "parked": report.parked,
        "rejected": report.rejected.iter().map(|r| json!({
            "entity": r.key.to_string(),
            "refused_by": match r.by {
                syncplan::RejectedBy::Here => "here",
                syncplan::RejectedBy::Peer => "hub",
            },
            "reason": r.reason,
        })).collect::<Vec<_>>(),
        "exchanges": report.exchanges,
        "retries": report.retries,
        "reinitialized": report.reinitialized,
        "migrations": report.migrations.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "migration_failure": report.migration_failure.as_ref().map(ToString::to_string),
        "elapsed_ms": report.elapsed.as_millis() as u64,
    })
}

/// A progress bar on standard error, shown once a session turns out to
/// be large (and only on a terminal: indicatif hides it otherwise).
struct Progress {
    bar: Option<ProgressBar>,
    quiet: bool,
}

impl Progress {
    fn new(quiet: bool) -> Self {
        Progress { bar: None, quiet }
    }

    fn update(&mut self, event: &SessionEvent) {
        match event {
            SessionEvent::Engine(Event::Progress(p)) => {
                let total = p.total_to_send + p.received + p.remaining_to_receive;
                let done = p.sent.min(p.total_to_send) + p.received;
                if self.bar.is_none() && total >= LARGE && !self.quiet {
                    self.bar = Some(new_bar());
                }
                if let Some(bar) = &self.bar {
                    bar.set_length(total.max(done));
                    bar.set_position(done);
                    bar.set_message(format!("sent {}, received {}", p.sent, p.received));
                }
            }
            SessionEvent::Retrying { reason, after, .. } => {
                let line = format!("retrying in {:.1}s: {reason}", after.as_secs_f64());
                match &self.bar {
                    Some(bar) => bar.println(line),
                    None if !self.quiet => eprintln!("{line}"),
                    None => {}
                }
            }
            _ => {}
        }
    }

    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

fn new_bar() -> ProgressBar {
    let bar = ProgressBar::new(0);
    if let Ok(style) =
        ProgressStyle::with_template("{spinner} [{bar:40}] {pos}/{len} changes  {msg}  ({elapsed})")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

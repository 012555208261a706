//! The HTTPS phases: the hub's server on 127.0.0.1 (an ephemeral port, a
//! self-signed certificate from rcgen that the nodes pin) and nodes driven
//! by [`syncplan::Node`] over [`syncplan::http::HttpTransport`], on fresh
//! databases.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use syncplan::http::{
    ClientConfig, EngineHub, HttpTransport, HubServer, SelfSigned, ServerConfig, Trust,
};
use syncplan::{Node, NodeInfo, SqliteStore};

use super::workload::{self, engine, hub_info, node_info};
use super::{Idle, Progress, Transported, quantile};
use crate::cli::failure::{Context, Failure, Result};

/// Runs the end-to-end, first-sync and idle phases over HTTPS.
pub fn run(dir: &Path, n: usize, idle: usize, progress: &Progress) -> Result<Transported> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(phases(dir, n, idle, progress))
}

async fn phases(dir: &Path, n: usize, idle: usize, progress: &Progress) -> Result<Transported> {
    let hub_info = hub_info();
    let (writer, fresh) = (node_info(11), node_info(12));
    let hub = engine(
        &dir.join("https-hub.db"),
        hub_info.clone(),
        21,
        &[writer.clone(), fresh.clone()],
    )?;
    let cert = SelfSigned::generate(&["127.0.0.1"]).context("making a TLS certificate")?;
    let tls = cert
        .identity
        .server_config()
        .context("setting up the server's TLS")?;
    // The idle phase makes a thousand sessions as fast as it can.
    let config = ServerConfig {
        rate_per_second: 1_000_000,
        rate_burst: 1_000_000,
        ..ServerConfig::default()
    };
    let address: std::net::SocketAddr = "127.0.0.1:0".parse().context("the loopback address")?;
    let server = HubServer::bind(address, tls, EngineHub::new(hub), config)
        .await
        .context("starting the hub's HTTPS server")?;
    let connect = |info: NodeInfo, db: &'static str| {
        let server = &server;
        let fingerprint = cert.fingerprint.clone();
        let hub_info = hub_info.clone();
        async move {
            let engine = engine(
                &dir.join(db),
                info.clone(),
                22,
                std::slice::from_ref(&hub_info),
            )?;
            let token = server
                .issue_token(info.id)
                .await
                .context("issuing a node token")?;
            let trust = Trust::pinned(&fingerprint).context("pinning the certificate")?;
            let transport = HttpTransport::new(
                &server.url(),
                token.as_str(),
                ClientConfig::default().trust(trust),
            )
            .context("setting up the HTTPS client")?;
            Ok::<_, Failure>(Node::builder_shared(engine, hub_info.id, Arc::new(transport)).build())
        }
    };

    let node = connect(writer, "https-node-1.db").await?;
    progress.phase("https e2e: plain SQL inserts", None);
    let start = Instant::now();
    node.with_engine(move |e| {
        workload::insert_rows(e.store().connection(), n, &Progress::hidden())
    })
    .await
    .context("writing on the node")??;
    progress.phase("https e2e: sync to the hub", None);
    session(&node, progress).await?;
    let e2e = start.elapsed();

    progress.phase("https first sync", None);
    let newcomer = connect(fresh, "https-node-2.db").await?;
    let start = Instant::now();
    session(&newcomer, progress).await?;
    let first_sync = start.elapsed();

    progress.phase("https idle sessions", Some(idle as u64));
    let mut times = Vec::with_capacity(idle);
    for _ in 0..idle {
        let start = Instant::now();
        node.sync().await.context("an idle HTTPS session")?;
        times.push(start.elapsed());
        progress.inc(1);
    }
    server.shutdown().await;
    Ok(Transported {
        e2e,
        first_sync,
        idle: Idle {
            p50: quantile(&mut times, 0.5),
            p99: quantile(&mut times, 0.99),
            roundtrip_p99: quantile(&mut times, 0.99),
        },
    })
}

/// One sync session, the bar following the changes sent and received.
async fn session(node: &Node<SqliteStore>, progress: &Progress) -> Result<()> {
    let report = node
        .sync_with(|event| match event {
            syncplan::SessionEvent::Sent { entity_count, .. } => {
                progress.inc(u64::from(*entity_count));
            }
            syncplan::SessionEvent::Received(incoming) => progress.inc(incoming.applied as u64),
            _ => {}
        })
        .await
        .context("an HTTPS sync session")?;
    if !report.complete {
        return Err(Failure::msg(format!(
            "the HTTPS session ended before everything was acknowledged: {}",
            report.summary()
        )));
    }
    Ok(())
}

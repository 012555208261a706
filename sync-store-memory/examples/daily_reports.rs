//! A hub and three offline desktops syncing daily reports in-process.
//!
//! Each desktop edits while offline (creates, updates, deletes of a
//! `DailyReport` and its lines); two of them edit the same report; then all
//! sync through the hub. The log says, in plain words, what was sent,
//! received and acknowledged, which conflict arose, how it was resolved and
//! where the losing version was kept, and checks that all four stores agree.
//!
//! Run with `cargo run -p sync-store-memory --example daily_reports`.

use serde::{Deserialize, Serialize};
use sync_core::json_view::envelope_to_json;
use sync_core::{
    ConflictStrategy, Engine, EngineConfig, EntityKey, EntityRegistry, EntityType, Event,
    FieldKind, NodeId, NodeInfo, Role, SyncError, Timestamp, Uuid,
};
use sync_store_memory::MemoryStore;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct DailyReport {
    date: String,
    brigade: String,
    hours: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct DailyReportLine {
    report_id: Uuid,
    task: String,
    qty: f64,
}

type Node = Engine<MemoryStore>;

fn main() -> Result<(), SyncError> {
    let registry = EntityRegistry::new()
        .with(
            EntityType::new("DailyReport")
                .field("date", FieldKind::Text)
                .field("brigade", FieldKind::Text)
                .field("hours", FieldKind::Int)
                .strategy(ConflictStrategy::ServerWins),
        )
        .with(
            EntityType::new("DailyReportLine")
                .reference("report_id", "DailyReport")
                .field("task", FieldKind::Text)
                .field("qty", FieldKind::Float),
        );
    let hub_info = NodeInfo::new(
        NodeId(Uuid::from_u128(1)),
        "HUB",
        "Central office",
        Role::Hub,
    );
    let mut hub = Engine::new(
        MemoryStore::new(),
        registry.clone(),
        EngineConfig::default().seed(1),
        hub_info.clone(),
    )?;
    let mut desktops = Vec::new();
    for i in 1..=3u64 {
        let info = NodeInfo::new(
            NodeId(Uuid::from_u128(0x100 + u128::from(i))),
            format!("DESKTOP-{i}"),
            format!("Site desktop {i}"),
            Role::Node,
        );
        hub.register_peer(info.clone())?;
        let mut desktop = Engine::new(
            MemoryStore::new(),
            registry.clone(),
            EngineConfig::default().seed(100 + i),
            info,
        )?;
        desktop.register_peer(hub_info.clone())?;
        desktops.push(desktop);
    }
    let start = Timestamp::from_secs(1_765_526_400); // 2025-12-12 08:00 UTC
    let at = |minutes: i64| start.add_millis(minutes * 60_000);

    println!("== Morning: DESKTOP-1 writes today's report and syncs it to the hub");
    let report = DailyReport {
        date: "2025-12-12".into(),
        brigade: "B-7".into(),
        hours: 8,
    };
    let report_id = desktops[0].insert_typed("DailyReport", &report, at(0))?;
    let report_key = EntityKey::new("DailyReport", report_id);
    for (task, qty) in [
        ("trench digging", 12.5),
        ("cable laying", 40.0),
        ("site cleanup", 1.0),
    ] {
        let line = DailyReportLine {
            report_id,
            task: task.into(),
            qty,
        };
        desktops[0].insert_typed("DailyReportLine", &line, at(1))?;
    }
    sync(&mut desktops[0], &mut hub, at(5))?;
    println!("\n== DESKTOP-2 and DESKTOP-3 come online and receive it");
    sync(&mut desktops[1], &mut hub, at(6))?;
    sync(&mut desktops[2], &mut hub, at(7))?;

    println!("\n== Afternoon, everyone offline:");
    println!("   DESKTOP-2 corrects the hours to 9; DESKTOP-3 to 10 (the same report)");
    desktops[1].put_typed(
        report_key.clone(),
        &DailyReport {
            hours: 9,
            ..report.clone()
        },
        at(240),
    )?;
    desktops[2].put_typed(
        report_key.clone(),
        &DailyReport {
            hours: 10,
            ..report.clone()
        },
        at(245),
    )?;
    println!("   DESKTOP-1 deletes the cleanup line and starts tomorrow's report");
    let cleanup = find_line(&mut desktops[0], report_id, "site cleanup")?;
    desktops[0].delete(cleanup, at(250))?;
    let tomorrow = DailyReport {
        date: "2025-12-13".into(),
        brigade: "B-7".into(),
        hours: 0,
    };
    desktops[0].insert_typed("DailyReport", &tomorrow, at(251))?;
    for (i, desktop) in desktops.iter_mut().enumerate() {
        println!(
            "   DESKTOP-{} has {} change(s) queued for the hub",
            i + 1,
            desktop.pending_count(hub_info.id)?
        );
    }

    println!("\n== Evening: everyone syncs (twice around, so every change reaches every desktop)");
    for round in 0..2 {
        for desktop in &mut desktops {
            sync(desktop, &mut hub, at(600 + round))?;
        }
    }

    println!("\n== Where the losing version was kept");
    for record in hub.versions(&report_key)? {
        let lost: DailyReport = sync_core::serde_bridge::from_record(
            hub.registry().require("DailyReport")?,
            &record.data.fields,
        )?;
        println!(
            "   hub version history {}: {lost:?} written by {}, arrived {}, resolution \"{}\"",
            record.id,
            code_of(&hub, record.source_node),
            record.arrival_time,
            record.resolution
        );
    }
    for audit in hub.audit_log()? {
        println!(
            "   hub audit {}: {} on {} from {}: {}",
            audit.id,
            audit.strategy,
            audit.key,
            code_of(&hub, audit.peer),
            audit.detail
        );
    }

    println!("\n== Do all four stores agree?");
    let reference = snapshot(&hub);
    let mut agree = true;
    for (i, desktop) in desktops.iter().enumerate() {
        let same = snapshot(desktop) == reference;
        agree &= same;
        println!(
            "   DESKTOP-{}: {}",
            i + 1,
            if same {
                "identical to the hub"
            } else {
                "DIFFERENT"
            }
        );
    }
    let hours: Option<DailyReport> = hub.get_typed(&report_key)?;
    println!(
        "   {} entities everywhere; today's report says {} hours",
        reference.len(),
        hours.map_or(0, |r| r.hours)
    );
    if !agree {
        eprintln!("the stores disagree");
        std::process::exit(1);
    }
    println!("   all four stores agree");
    Ok(())
}

/// One sync session of `desktop` with the hub over an in-process "network".
fn sync(desktop: &mut Node, hub: &mut Node, now: Timestamp) -> Result<(), SyncError> {
    let me = desktop.local_node().code.clone();
    let hub_id = hub.local_node().id;
    desktop.start_sync(hub_id)?;
    while let Some(packet) = desktop.poll_transmit(now)? {
        println!(
            "   {me} -> hub: packet #{} with {} change(s), acknowledging hub packet #{}",
            packet.packet_no,
            packet.entity_count,
            ack_of(&packet.bytes)
        );
        let reply = hub.respond(&packet.bytes, now)?;
        report_events(hub, "hub");
        let incoming = desktop.handle_incoming(&reply, now)?;
        println!(
            "   hub -> {me}: packet #{} with {} change(s), acknowledging {me} packet #{}{}",
            incoming.packet_no,
            incoming.applied + incoming.conflicts + incoming.parked,
            ack_of(&reply),
            if incoming.duplicate {
                " (duplicate, ignored)"
            } else {
                ""
            }
        );
        report_events(desktop, &me);
    }
    Ok(())
}

fn report_events(engine: &mut Node, who: &str) {
    while let Some(event) = engine.poll_event() {
        match event {
            Event::Applied(change) => println!(
                "      {who} applied {:?} of {}",
                change.kind, change.entity.key
            ),
            Event::Conflict(c) => println!(
                "      {who}: CONFLICT on {} with {}: {} -> {} stands{}",
                c.key,
                code_of(engine, c.peer),
                c.strategy,
                match c.winner {
                    sync_core::ConflictSide::Local => format!("{who}'s own version"),
                    sync_core::ConflictSide::Incoming =>
                        format!("{}'s version", code_of(engine, c.peer)),
                    sync_core::ConflictSide::Merged => "a merge of both versions".to_owned(),
                },
                c.version_record
                    .map(|id| format!(
                        "; the losing version is kept whole in version history record {id}"
                    ))
                    .unwrap_or_default()
            ),
            Event::SyncComplete { .. } => {
                println!("      {who}: sync complete, nothing pending either way")
            }
            Event::PairReinitialized { reason, .. } => println!("      {who}: {reason}"),
            Event::Security(s) => println!("      {who}: security event: {}", s.detail),
            _ => {}
        }
    }
}

fn ack_of(bytes: &[u8]) -> u64 {
    envelope_to_json(bytes, &Default::default())
        .ok()
        .and_then(|json| json["header"]["ack_packet_no"].as_u64())
        .unwrap_or(0)
}

fn code_of(engine: &Node, id: NodeId) -> String {
    if engine.local_node().id == id {
        return engine.local_node().code.clone();
    }
    let mut store = engine.store().clone();
    sync_core::Store::begin(&mut store)
        .ok()
        .and_then(|txn| sync_core::StoreTxn::peer(&txn, id).ok().flatten())
        .map_or_else(|| id.to_string(), |p| p.info.code)
}

fn find_line(desktop: &mut Node, report_id: Uuid, task: &str) -> Result<EntityKey, SyncError> {
    let line = desktop
        .store()
        .all_entities()
        .find(|s| {
            s.entity.key.entity_type == "DailyReportLine"
                && s.entity.fields.get("report_id").and_then(|v| v.as_uuid()) == Some(report_id)
                && s.entity.fields.get("task").and_then(|v| v.as_text()) == Some(task)
        })
        .map(|s| s.entity.key.clone());
    line.ok_or_else(|| {
        sync_core::WriteError::NotFound(EntityKey::new("DailyReportLine", Uuid::nil())).into()
    })
}

/// Entities with their content, for comparing stores.
fn snapshot(engine: &Node) -> Vec<(EntityKey, bool, String)> {
    engine
        .store()
        .all_entities()
        .map(|s| {
            (
                s.entity.key.clone(),
                s.entity.is_deleted,
                format!("{:?}", s.entity.fields),
            )
        })
        .collect()
}

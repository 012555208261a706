//! What sync leaves behind: open conflicts (`conflicts`), the version
//! history of an entity (`history`), the audit and security logs (`audit`).

use std::path::Path;

use serde_json::{Value as Json, json};
use syncplan::{EntityKey, ManualChoice, Uuid};

use super::failure::{Context, Failure, Result};
use super::layout::Opened;
use super::output::{Output, entity_json, fields_json, fields_text};

/// Which version `conflicts resolve` keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Keep {
    /// The version that stayed current here (at the hub: the hub's).
    Local,
    /// The competing version that arrived from the node.
    Remote,
    /// The current version stays, and the competing one is kept as a new
    /// entity (a copy under a new id).
    Both,
}

/// `conflicts list`: conflicts waiting for a person (manual strategy).
pub fn list_conflicts(dir: &Path, out: &Output) -> Result<()> {
    let mut opened = Opened::open(dir)?;
    let conflicts = opened
        .engine
        .open_conflicts()
        .context("reading the open conflicts")?;
    let mut rows = Vec::new();
    for c in &conflicts {
        rows.push(json!({
            "id": c.id.to_string(),
            "entity": c.key.to_string(),
            "type": c.key.entity_type,
            "uuid": c.key.id.to_string(),
            "from": opened.code_of(c.from),
            "arrived_at": c.arrived_at.to_string(),
            "local": fields_json(&c.current.fields),
            "remote": fields_json(&c.incoming.fields),
        }));
    }
    out.emit(&json!({ "conflicts": rows }), || {
        if rows.is_empty() {
            return "no conflicts wait for a decision (only types with the manual strategy leave any, at the hub)".into();
        }
        let mut text = String::new();
        for (c, row) in conflicts.iter().zip(&rows) {
            text.push_str(&format!(
                "{}  {} from {} at {}\n  local:  {}\n  remote: {}\n",
                c.id,
                c.key,
                row["from"].as_str().unwrap_or(""),
                c.arrived_at,
                fields_text(&c.current.fields),
                fields_text(&c.incoming.fields)
            ));
        }
        text.push_str("decide with: syncplan conflicts resolve ID --keep local|remote|both");
        text
    })
}

/// `conflicts resolve ID --keep ...`: the decision is written as a new
/// version and reaches every node.
pub fn resolve_conflict(dir: &Path, id: &str, keep: Keep, out: &Output) -> Result<()> {
    let id: Uuid = id.parse().map_err(|_| {
        Failure::msg(format!(
            "{id:?} is not a conflict id; `syncplan conflicts list` shows them"
        ))
    })?;
    let mut opened = Opened::open(dir)?;
    let conflict = opened
        .engine
        .open_conflicts()?
        .into_iter()
        .find(|c| c.id == id)
        .ok_or(syncplan::SyncError::ConflictNotFound(id))?;
    let now = syncplan::now();
    let choice = match keep {
        Keep::Local | Keep::Both => ManualChoice::KeepCurrent,
        Keep::Remote => ManualChoice::TakeIncoming,
    };
    opened
        .engine
        .resolve_conflict(id, choice, now)
        .context("recording the decision")?;
    let copy = match keep {
        Keep::Both => Some(
            opened
                .engine
                .insert(
                    &conflict.key.entity_type,
                    conflict.incoming.fields.clone(),
                    now,
                )
                .context("keeping the remote version as a copy")?,
        ),
        _ => None,
    };
    out.emit(
        &json!({
            "resolved": id.to_string(),
            "entity": conflict.key.to_string(),
            "kept": format!("{keep:?}").to_lowercase(),
            "copy": copy.map(|c| c.to_string()),
        }),
        || {
            let mut text = format!(
                "conflict {id} on {} resolved: {} version kept; it reaches every node at their next sync",
                conflict.key,
                match keep {
                    Keep::Local | Keep::Both => "the local",
                    Keep::Remote => "the remote",
                }
            );
            if let Some(copy) = copy {
                text.push_str(&format!(
                    "\nthe remote version is kept too, as {} {copy}",
                    conflict.key.entity_type
                ));
            }
            text
        },
    )
}

/// `history ENTITY`: the current version and every version kept for it.
pub fn history(dir: &Path, entity: &str, out: &Output) -> Result<()> {
    let mut opened = Opened::open(dir)?;
    let key = parse_entity(&mut opened, entity)?;
    let current = opened.engine.get(&key).context("reading the entity")?;
    let versions = opened
        .engine
        .versions(&key)
        .context("reading the version history")?;
    let mut rows = Vec::new();
    for v in &versions {
        rows.push(json!({
            "id": v.id.to_string(),
            "source_node": opened.code_of(v.source_node),
            "source_node_id": v.source_node.to_string(),
            "arrival_time": v.arrival_time.to_string(),
            "resolution": v.resolution,
            "version": entity_json(&v.data),
        }));
    }
    let value = json!({
        "entity": key.to_string(),
        "current": current.as_ref().map(entity_json),
        "versions": rows,
    });
    out.emit(&value, || {
        let mut text = match &current {
            Some(e) => format!(
                "{key}\n  current ({}, written {}): {}",
                if e.is_deleted { "deleted" } else { "live" },
                e.updated_at,
                fields_text(&e.fields)
            ),
            None => format!("{key}\n  not in this store"),
        };
        if versions.is_empty() {
            text.push_str(
                "\n  no other versions kept (versions are kept when a conflict is resolved)",
            );
        }
        for (v, row) in versions.iter().zip(&rows) {
            text.push_str(&format!(
                "\n  version {} from {}, arrived {}: {}\n    {}",
                v.id,
                row["source_node"].as_str().unwrap_or(""),
                v.arrival_time,
                v.resolution,
                fields_text(&v.data.fields)
            ));
        }
        text
    })
}

/// `TYPE/UUID`, `TYPE:UUID`, `TYPE UUID` or a bare UUID (looked up in
/// every registered type).
fn parse_entity(opened: &mut Opened, text: &str) -> Result<EntityKey> {
    let text = text.trim();
    let split = text
        .rsplit_once(['/', ':', ' '])
        .map(|(t, id)| (Some(t.trim()), id.trim()));
    let (ty, id) = split.unwrap_or((None, text));
    let id: Uuid = id.parse().map_err(|_| {
        Failure::msg(format!(
            "{text:?} does not name an entity; write TYPE/UUID (e.g. DailyReport/0190c7e2-...) or the UUID alone"
        ))
    })?;
    if let Some(ty) = ty {
        return Ok(EntityKey::new(ty, id));
    }
    let types: Vec<String> = opened
        .engine
        .registry()
        .types()
        .map(|t| t.name().to_owned())
        .collect();
    for ty in types {
        let key = EntityKey::new(ty, id);
        if opened.engine.get(&key)?.is_some() || !opened.engine.versions(&key)?.is_empty() {
            return Ok(key);
        }
    }
    Err(Failure::msg(format!(
        "no entity {id} in this store; name its type too (TYPE/UUID) if it is only in another node's"
    )))
}

/// `audit`: every conflict resolution, and the security log.
pub fn audit(dir: &Path, out: &Output) -> Result<()> {
    let mut opened = Opened::open(dir)?;
    let records = opened.engine.audit_log().context("reading the audit log")?;
    let security = opened
        .engine
        .security_events()
        .context("reading the security log")?;
    let mut resolutions = Vec::new();
    for r in &records {
        resolutions.push(json!({
            "id": r.id.to_string(),
            "at": r.at.to_string(),
            "entity": r.key.to_string(),
            "peer": opened.code_of(r.peer),
            "strategy": r.strategy,
            "winner": format!("{:?}", r.winner).to_lowercase(),
            "local_origin": opened.code_of(r.local_origin),
            "incoming_origin": opened.code_of(r.incoming_origin),
            "detail": r.detail,
        }));
    }
    let mut events = Vec::new();
    for s in &security {
        events.push(json!({
            "at": s.at.to_string(),
            "peer": s.peer.map(|p| opened.code_of(p)),
            "kind": format!("{:?}", s.kind),
            "detail": s.detail,
        }));
    }
    out.emit(
        &json!({ "resolutions": resolutions, "security": events }),
        || audit_text(&resolutions, &events),
    )
}

fn audit_text(resolutions: &[Json], events: &[Json]) -> String {
    let s = |v: &Json| v.as_str().unwrap_or("").to_owned();
    let mut text = format!("{} conflict resolution(s)", resolutions.len());
    for r in resolutions {
        text.push_str(&format!(
            "\n  {} {} with {}: {} ({} won): {}",
            s(&r["at"]),
            s(&r["entity"]),
            s(&r["peer"]),
            s(&r["strategy"]),
            s(&r["winner"]),
            s(&r["detail"])
        ));
    }
    text.push_str(&format!("\n{} security event(s)", events.len()));
    for e in events {
        text.push_str(&format!(
            "\n  {} {} {}: {}",
            s(&e["at"]),
            s(&e["kind"]),
            e["peer"].as_str().unwrap_or("-"),
            s(&e["detail"])
        ));
    }
    text
}

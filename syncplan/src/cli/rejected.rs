//! `rejected list`, `rejected retry ID`, `rejected discard ID`: changes a
//! store refused (a constraint of the application's schema), kept whole
//! with the reason so that one bad row never blocks a node.

use std::path::Path;

use serde_json::json;
use syncplan::{RejectedBy, Uuid};

use super::failure::{Context, Failure, Result};
use super::layout::Opened;
use super::output::{Output, entity_json, fields_text};

/// `rejected list`.
pub fn list(dir: &Path, out: &Output) -> Result<()> {
    let mut opened = Opened::open(dir)?;
    let records = opened
        .engine
        .rejected()
        .context("reading the rejected changes")?;
    let mut rows = Vec::new();
    for r in &records {
        rows.push(json!({
            "id": r.id.to_string(),
            "entity": r.entity.key.to_string(),
            "refused_by": match r.by {
                RejectedBy::Here => "here",
                RejectedBy::Peer => "peer",
            },
            "peer": opened.code_of(r.peer),
            "reason": r.reason,
            "at": r.at.to_string(),
            "version": entity_json(&r.entity),
        }));
    }
    out.emit(&json!({ "rejected": rows }), || {
        if records.is_empty() {
            return "no rejected changes".into();
        }
        let mut text = String::new();
        for (r, row) in records.iter().zip(&rows) {
            let peer = row["peer"].as_str().unwrap_or("");
            text.push_str(&format!(
                "{}  {}: {}\n  {}\n  version: {}\n",
                r.id,
                r.entity.key,
                match r.by {
                    RejectedBy::Here => format!("this store refused the version {peer} sent"),
                    RejectedBy::Peer => format!("{peer} refused this node's version"),
                },
                r.reason,
                fields_text(&r.entity.fields)
            ));
        }
        text.push_str("fix the cause, then: syncplan rejected retry ID; or give up: syncplan rejected discard ID");
        text
    })
}

/// `rejected retry ID`: applies (or resends) the version again.
pub fn retry(dir: &Path, id: &str, out: &Output) -> Result<()> {
    let id = parse_id(id)?;
    let mut opened = Opened::open(dir)?;
    opened
        .engine
        .retry_rejected(id, syncplan::now())
        .context("retrying the rejected change")?;
    out.emit(&json!({ "retried": id.to_string() }), || {
        format!("rejected change {id} applied again; it travels with the next sync")
    })
}

/// `rejected discard ID`: gives up on it; the version moves to the
/// entity's version history.
pub fn discard(dir: &Path, id: &str, out: &Output) -> Result<()> {
    let id = parse_id(id)?;
    let mut opened = Opened::open(dir)?;
    opened
        .engine
        .discard_rejected(id, syncplan::now())
        .context("discarding the rejected change")?;
    out.emit(&json!({ "discarded": id.to_string() }), || {
        format!("rejected change {id} discarded; the version is kept in the entity's history (syncplan history)")
    })
}

fn parse_id(id: &str) -> Result<Uuid> {
    id.parse().map_err(|_| {
        Failure::msg(format!(
            "{id:?} is not a rejected change's id; `syncplan rejected list` shows them"
        ))
    })
}

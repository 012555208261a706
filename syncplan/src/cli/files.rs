//! `export` and `import`: sealed packet files carried by hand.

use std::path::{Path, PathBuf};

use serde_json::{Value as Json, json};
use syncplan::file::{self as files, ExportOptions, FileHeader, Imported, Preview};

use super::failure::{Context, Failure, Result};
use super::hub::find_peer;
use super::layout::Opened;
use super::output::Output;

/// `export OUTDIR`: the next packet for the hub (on a node) or for the
/// node `to` (at the hub), sealed into files in `outdir`.
/// With a `selection` other than everything, only the changes it picks
/// travel; the others stay queued.
pub fn export(
    dir: &Path,
    outdir: &Path,
    to: Option<&str>,
    selection: &syncplan::Selection,
    out: &Output,
) -> Result<()> {
    let mut opened = Opened::open(dir)?;
    let peer = match (opened.config.role, to) {
        (super::layout::DirRole::Node, _) => opened.config.upstream(dir)?.id,
        (super::layout::DirRole::Hub, Some(which)) => find_peer(&mut opened.engine, which)?.id(),
        (super::layout::DirRole::Hub, None) => {
            return Err(Failure::msg(
                "at the hub, say which node the file is for: --to CODE",
            ));
        }
    };
    let code = opened.code_of(peer);
    let exported = files::export_selected(
        &mut opened.engine,
        peer,
        outdir,
        &ExportOptions::default(),
        selection,
        syncplan::now(),
    )
    .with_context(|| format!("exporting for {code}"))?;
    let paths: Vec<String> = exported
        .files
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    out.emit(
        &json!({
            "to": code,
            "files": paths,
            "header": header_json(&exported.header),
            "more": exported.more,
        }),
        || {
            format!(
                "packet #{} for {code} with {} change(s) written to {}{}\ncarry it to {code} and import it there; the changes stay queued until {code}'s reply is imported here",
                exported.header.packet_no,
                exported.header.entity_count,
                paths.join(", "),
                if exported.more {
                    "\nmore changes wait: import the reply, then export again"
                } else {
                    ""
                }
            )
        },
    )
}

/// `import FILE...`: verifies and applies sealed files; at the hub, writes
/// the reply for the node into `reply_dir` (default: beside the first
/// file). With `dry_run`, reports what would change and changes nothing.
pub fn import(
    dir: &Path,
    paths: &[PathBuf],
    dry_run: bool,
    reply_dir: Option<&Path>,
    out: &Output,
) -> Result<()> {
    let mut opened = Opened::open(dir)?;
    let now = syncplan::now();
    if dry_run {
        let previews =
            files::dry_run(&mut opened.engine, paths, now).context("previewing the import")?;
        let value: Vec<Json> = previews.iter().map(preview_json).collect();
        return out.emit(&json!({ "dry_run": true, "exports": value }), || {
            previews
                .iter()
                .map(preview_text)
                .collect::<Vec<_>>()
                .join("\n")
        });
    }
    if opened.is_hub() {
        let reply_dir = match reply_dir {
            Some(d) => d.to_path_buf(),
            None => paths
                .first()
                .and_then(|p| p.parent())
                .map_or_else(|| PathBuf::from("."), Path::to_path_buf),
        };
        let answers = files::answer(
            &mut opened.engine,
            paths,
            &reply_dir,
            &ExportOptions::default(),
            now,
        )
        .context("importing")?;
        let mut rows = Vec::new();
        let mut text = Vec::new();
        for a in &answers {
            let replies: Vec<String> = a
                .reply_files
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            rows.push(json!({
                "imported": a.imported.as_ref().map(imported_json),
                "refused": a.refusal.as_ref().map(ToString::to_string),
                "reply_files": replies,
            }));
            text.push(match (&a.imported, &a.refusal) {
                (Some(i), _) => format!(
                    "{}; reply written to {}",
                    imported_text(i),
                    replies.join(", ")
                ),
                (None, Some(r)) => format!(
                    "packet #{} refused: {r}; the refusal is written to {}",
                    a.header.packet_no,
                    replies.join(", ")
                ),
                (None, None) => format!(
                    "packet #{} answered in {}",
                    a.header.packet_no,
                    replies.join(", ")
                ),
            });
        }
        return out.emit(&json!({ "exports": rows }), || text.join("\n"));
    }
    let imported = files::import(&mut opened.engine, paths, now).context("importing")?;
    let rows: Vec<Json> = imported.iter().map(imported_json).collect();
    out.emit(&json!({ "exports": rows }), || {
        imported
            .iter()
            .map(imported_text)
            .collect::<Vec<_>>()
            .join("\n")
    })
}

fn imported_json(i: &Imported) -> Json {
    json!({
        "packet_no": i.header.packet_no,
        "duplicate": i.duplicate,
        "applied": i.applied,
        "conflicts": i.conflicts,
        "parked": i.parked,
        "more": i.more,
    })
}

fn imported_text(i: &Imported) -> String {
    if i.duplicate {
        return format!(
            "packet #{} was imported before: nothing changed",
            i.header.packet_no
        );
    }
    format!(
        "packet #{} imported: {} change(s) applied, {} conflict(s){}",
        i.header.packet_no,
        i.applied,
        i.conflicts,
        if i.more {
            "; the sender has more: import its next file"
        } else {
            ""
        }
    )
}

fn preview_json(p: &Preview) -> Json {
    let keys = |ks: &[syncplan::EntityKey]| ks.iter().map(ToString::to_string).collect::<Vec<_>>();
    json!({
        "packet_no": p.header.packet_no,
        "duplicate": p.duplicate,
        "inserts": keys(&p.inserts),
        "updates": keys(&p.updates),
        "deletes": keys(&p.deletes),
        "conflicts": p.conflicts.iter().map(|c| json!({
            "entity": c.key.to_string(),
            "strategy": c.strategy,
            "winner": format!("{:?}", c.winner).to_lowercase(),
            "needs_person": c.needs_person,
        })).collect::<Vec<_>>(),
        "parked": p.parked,
        "unchanged": p.unchanged,
        "refused": p.refusal.as_ref().map(ToString::to_string),
    })
}

fn preview_text(p: &Preview) -> String {
    if let Some(refusal) = &p.refusal {
        return format!("packet #{} would be refused: {refusal}", p.header.packet_no);
    }
    if p.duplicate {
        return format!(
            "packet #{} was imported before: nothing would change",
            p.header.packet_no
        );
    }
    let mut text = format!(
        "packet #{} would insert {}, update {}, delete {}, leave {} unchanged, raise {} conflict(s) (dry run: nothing changed)",
        p.header.packet_no,
        p.inserts.len(),
        p.updates.len(),
        p.deletes.len(),
        p.unchanged,
        p.conflicts.len()
    );
    for c in &p.conflicts {
        text.push_str(&format!(
            "\n  conflict on {}: {} would keep the {:?} version{}",
            c.key,
            c.strategy,
            c.winner,
            if c.needs_person {
                " until a person decides"
            } else {
                ""
            }
        ));
    }
    text
}

/// A sealed file's readable header as JSON, in the envelope header's
/// shape.
pub fn header_json(h: &FileHeader) -> Json {
    json!({
        "format_version": h.format_version,
        "kind": format!("{:?}", h.kind).to_lowercase(),
        "sender_node_id": h.sender.to_string(),
        "recipient_node_id": h.recipient.to_string(),
        "packet_no": h.packet_no,
        "ack_packet_no": h.ack,
        "schema_version": h.schema_version,
        "entity_count": h.entity_count,
        "part": h.part,
        "parts": h.parts,
        "export_id": h.export_id_hex(),
        "timestamp": h.created.to_string(),
        "plain_bytes": h.plain_bytes,
        "sealed_bytes": h.sealed_bytes,
    })
}

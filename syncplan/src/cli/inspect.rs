//! `inspect FILE`: a packet, or a sealed file's readable header, as JSON
//! in the envelope shape of the specification (header, body.entities with
//! named fields).

use std::path::Path;

use serde_json::json;
use syncplan::codec::Limits;
use syncplan::file::{FileError, FileRejection};
use syncplan::json_view::envelope_to_json;

use super::failure::{Context, Failure, Result};
use super::files::header_json;

/// Prints the envelope or sealed file header in `file` as JSON.
pub fn inspect(file: &Path) -> Result<()> {
    let json = match syncplan::file::inspect(file) {
        // A sealed file: its body is encrypted, the header is readable.
        Ok(header) => json!({ "header": header_json(&header), "body": "sealed" }),
        Err(FileError::Rejected {
            reason: FileRejection::NotASyncFile,
            ..
        }) => packet(file)?,
        Err(e) => return Err(Failure::from(e)),
    };
    let text = serde_json::to_string_pretty(&json).context("encoding the JSON")?;
    println!("{text}");
    Ok(())
}

fn packet(file: &Path) -> Result<serde_json::Value> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    envelope_to_json(&bytes, &Limits::default()).map_err(|e| {
        Failure::msg(format!(
            "{} is neither a sealed syncplan file nor a packet: {e}",
            file.display()
        ))
    })
}

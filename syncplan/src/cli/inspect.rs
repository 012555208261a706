//! `inspect FILE`: a packet as JSON, in the envelope shape of the
//! specification (header, body.entities with named fields).

use std::path::Path;

use syncplan::codec::Limits;
use syncplan::json_view::envelope_to_json;

use super::failure::{Context, Failure, Result};

/// Prints the envelope in `file` as JSON.
pub fn inspect(file: &Path) -> Result<()> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let json = envelope_to_json(&bytes, &Limits::default())
        .map_err(|e| Failure::msg(format!("{} is not a syncplan packet: {e}", file.display())))?;
    let text = serde_json::to_string_pretty(&json).context("encoding the JSON")?;
    println!("{text}");
    Ok(())
}

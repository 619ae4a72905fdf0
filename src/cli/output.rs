//! How every command prints: one JSON document with `--json`, else text lines.

use anyhow::Result;
use clap::Args;
use serde::Serialize;

#[derive(Args)]
pub struct JsonFlag {
    /// Print one JSON document instead of text.
    #[arg(long)]
    pub json: bool,
}

pub(super) fn print_json<T: Serialize>(value: &T) -> Result<()> {
    outln!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// A listing: one JSON array with --json, else a line per item (`line`), or `empty`.
pub(super) fn print_list<T: Serialize>(
    out: &JsonFlag,
    items: &[T],
    empty: &str,
    line: impl FnMut(&T),
) -> Result<()> {
    if out.json {
        print_json(&items)
    } else {
        if items.is_empty() {
            outln!("{empty}");
        }
        items.iter().for_each(line);
        Ok(())
    }
}

/// One record: JSON with --json, else as `text` shows it.
pub(super) fn print_one<T: Serialize>(
    out: &JsonFlag,
    value: &T,
    text: impl FnOnce(&T),
) -> Result<()> {
    if out.json {
        print_json(value)
    } else {
        text(value);
        Ok(())
    }
}

pub(super) fn print_deleted(out: &JsonFlag, what: &str, id: i64) -> Result<()> {
    print_one(out, &serde_json::json!({ "deleted": id }), |_| {
        outln!("{what} {id} deleted")
    })
}

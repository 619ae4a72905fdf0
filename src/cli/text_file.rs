//! Small text inputs of commands (rules, macros, business hours).

use anyhow::{bail, Context, Result};

/// The UTF-8 text of a file of at most 1 MiB.
pub(super) fn read_text(path: &std::path::Path) -> Result<String> {
    let meta = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    if meta.len() > 1024 * 1024 {
        bail!("{} is larger than 1 MiB", path.display());
    }
    std::fs::read_to_string(path)
        .with_context(|| format!("reading {} (UTF-8 text)", path.display()))
}

//! Small text inputs of commands (rules, macros, business hours).

use super::context::resolve;
use anyhow::{bail, Context, Result};
use std::path::Path;

/// The UTF-8 text of a file of at most 1 MiB. `path` is as the user gave it (relative to
/// the directory the command was started in), and so are the errors.
pub(super) fn read_text(path: &Path) -> Result<String> {
    let file = resolve(path);
    let meta = std::fs::metadata(&file).with_context(|| format!("reading {}", path.display()))?;
    if meta.len() > 1024 * 1024 {
        bail!("{} is larger than 1 MiB", path.display());
    }
    std::fs::read_to_string(&file)
        .with_context(|| format!("reading {} (UTF-8 text)", path.display()))
}

/// The UTF-8 text of a file of any size (a reply's body), `path` as the user gave it.
pub(super) fn read_any_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(resolve(path)).with_context(|| format!("reading {}", path.display()))
}

/// The bytes of a file (an attachment), `path` as the user gave it.
pub(super) fn read_bytes(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(resolve(path)).with_context(|| format!("reading {}", path.display()))
}

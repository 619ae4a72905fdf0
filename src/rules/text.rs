//! Text comparison for rules: case- and accent-insensitive (see `domain::text_fold`).

pub use crate::domain::{fold_text as fold, strip_marks};

//! Plain types (`src/domain`): address syntax.
mod addresses;

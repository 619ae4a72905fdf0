//! The command line (`src/cli`): commands beside a running server go through it.
mod admin_channel;

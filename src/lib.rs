//! Postern: an email ingestion gateway for support teams.
//!
//! The parts, what each may import, and how a message flows through them are described in
//! docs/ARCHITECTURE.md: `config`, `domain` (plain types, imports nothing of ours), `net`,
//! `store` (storage only; SQL lives nowhere else), `smtp` (knows nothing of storage), `auth`,
//! `ingest` (parse, classify, thread), `import`, `outbound`, `rules`, `http` (nothing below
//! imports it), `cli` the command line, `admin_socket` which carries command lines to a
//! running server, and `app` which wires them (`main.rs` only parses and dispatches).

pub mod admin_socket;
pub mod app;
pub mod auth;
pub mod cli;
pub mod config;
pub mod domain;
pub mod http;
pub mod import;
pub mod ingest;
pub mod metrics;
pub mod net;
pub mod outbound;
pub mod private_files;
pub mod rules;
pub mod smtp;
pub mod store;
pub mod telemetry;

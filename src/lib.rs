//! Postern: an email ingestion gateway for support teams.
//!
//! Parts (see DESIGN.md): `config`, `domain`, `store`, `smtp`, `ingest`, `http`, and
//! `app` which wires them, `cli` the command line (`main.rs` only parses and dispatches).
//! `smtp` knows nothing of storage; `domain` imports nothing of ours.

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

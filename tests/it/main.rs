//! Postern's integration tests, one crate: a module for each part of `src/` holding the
//! tests of that part (in-process, or against the real `postern` binary as a child
//! process), and `common` with the scaffolding they share (servers, SMTP clients, the
//! loopback DNS server, Dovecot, the outbound peers).
//!
//! Two tests stay their own binaries because they change the whole process:
//! `tests/accept_emfile.rs` lowers the open-file limit, `tests/tnef.rs` installs a
//! counting global allocator.

mod common;

mod app;
mod auth;
mod cli;
mod domain;
mod http;
mod import;
mod ingest;
mod net;
mod outbound;
mod rules;
mod smtp;
mod store;

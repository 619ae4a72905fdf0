//! Intake (`src/ingest`): parsing, classification, threading, hostile input.
mod classification_e2e;
mod classify;
mod corpora;
mod fuzz_regressions;
mod hostile_input;
mod mailbox_threads;
mod participants_cap;
mod reply_text;
mod thread_headers;
mod threading;

//! The SMTP session state machine (`src/smtp`).
mod session;

//! The SMTP session state machine (`src/smtp`).
mod dialogs;
mod pipe;
mod session;

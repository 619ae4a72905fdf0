//! Import sources and jobs (`src/import`): mbox, Maildir, eml folders, IMAP, uploads.
mod api_jobs;
mod conversations;
mod folders;
mod generated_mail;
mod imap;
mod limits;
mod mbox;
mod pipeline;

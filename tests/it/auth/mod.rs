//! Sender authentication (`src/auth`): SPF, DKIM, DMARC, ARC against the loopback DNS server.
mod dkim_corpora;
mod end_to_end;
mod org_domain;
mod spf_suites;

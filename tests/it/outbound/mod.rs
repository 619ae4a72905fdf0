//! Outbound mail (`src/outbound`) against real receiving peers.
mod end_to_end;

//! Connection-level defences shared by the SMTP and HTTP listeners: clients grouped by
//! network prefix, connection caps per group, back-off on accept errors, the open-file
//! budget, and deadlines for slow senders. It imports nothing of ours.

pub mod accept;
pub mod client;
pub mod fds;
pub mod limits;
pub mod pace;

pub use accept::AcceptBackoff;
pub use client::{ClientGroup, PrefixLengths};
pub use limits::{ConnectionLimits, ConnectionSlot, LimitHit, RefusalLog};
pub use pace::{Pace, PaceBreach, PaceLimits};

//! Who a message makes a participant of its ticket (the people whose replies may join it,
//! the threading order's step 3 in docs/ARCHITECTURE.md), and how many at most: a message
//! with 100,000 addresses in its To header must not add 100,000 rows. The raw message keeps
//! every address, and so do the message's own To and Cc; only the participant rows are
//! capped.

use crate::domain::Mailbox;
use std::collections::HashSet;

/// `threading.max_participants_per_message` when the caller sets none.
pub const DEFAULT_MAX_PARTICIPANTS: usize = 100;

/// The addresses that become participants, at most `max`, in the order they are kept: the
/// sender first, then To, then Cc, as written. Our own forwarding addresses (`inbound_domain`)
/// are not people and are left out; each address counts once.
///
/// The store adds the ticket's customer besides these when it is someone else (the
/// original sender of a message the brand forwarded by hand).
pub fn participants(
    from: &Mailbox,
    to: &[Mailbox],
    cc: &[Mailbox],
    inbound_domain: &str,
    max: usize,
) -> Vec<Mailbox> {
    let mut kept: Vec<Mailbox> = Vec::with_capacity(max.min(to.len() + cc.len() + 1));
    let mut seen: HashSet<&str> = HashSet::new();
    for p in std::iter::once(from).chain(to).chain(cc) {
        if kept.len() >= max {
            tracing::info!(
                kept = max,
                addresses = 1 + to.len() + cc.len(),
                "message with more addresses than threading.max_participants_per_message: \
                 only the first are recorded as participants of its ticket"
            );
            break;
        }
        let ours = p
            .address
            .rsplit_once('@')
            .is_some_and(|(_, d)| d.eq_ignore_ascii_case(inbound_domain));
        if ours || p.address.is_empty() || !seen.insert(p.address.as_str()) {
            continue;
        }
        kept.push(p.clone());
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mb(a: &str) -> Mailbox {
        Mailbox {
            name: None,
            address: a.to_string(),
        }
    }

    fn addresses(list: &[Mailbox]) -> Vec<&str> {
        list.iter().map(|m| m.address.as_str()).collect()
    }

    #[test]
    fn the_sender_comes_first_then_to_and_cc_in_order_up_to_the_cap() {
        let to: Vec<Mailbox> = (0..1000).map(|i| mb(&format!("to{i}@x.test"))).collect();
        let cc = vec![mb("cc@x.test")];
        let kept = participants(&mb("ana@c.test"), &to, &cc, "in.test", 3);
        assert_eq!(addresses(&kept), ["ana@c.test", "to0@x.test", "to1@x.test"]);
        let all = participants(&mb("ana@c.test"), &to[..2], &cc, "in.test", 100);
        assert_eq!(
            addresses(&all),
            ["ana@c.test", "to0@x.test", "to1@x.test", "cc@x.test"]
        );
    }

    #[test]
    fn forwarding_addresses_and_repeats_take_no_place() {
        let to = vec![
            mb("shop-abc@IN.test"),
            mb("ana@c.test"),
            mb("bob@c.test"),
            mb("bob@c.test"),
        ];
        let kept = participants(&mb("ana@c.test"), &to, &[mb("eve@c.test")], "in.test", 3);
        assert_eq!(addresses(&kept), ["ana@c.test", "bob@c.test", "eve@c.test"]);
    }
}

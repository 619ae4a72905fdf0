//! The generated mailbox the import tests read (threads of three: a customer writes, the
//! shop replies, the customer answers; dates increasing) and the mbox text of messages.

/// The shop's support address, the other side of every generated thread.
pub const BRAND: &str = "support@shop.test";

/// `n` messages in threads, dates increasing; `tag` goes into every Message-ID, so that
/// mailboxes generated with different tags share no message.
pub fn generated_mailbox(n: usize, tag: &str) -> Vec<String> {
    (0..n)
        .map(|i| {
            let thread = i / 3;
            let customer = format!("customer{}@c{}.test", thread % 400, thread % 400);
            let date = chrono::DateTime::from_timestamp(1_700_000_000 + (i as i64) * 600, 0)
                .map(|d| d.to_rfc2822())
                .unwrap_or_default();
            let (from, to, extra) = match i % 3 {
                0 => (customer.clone(), BRAND.to_string(), String::new()),
                1 => (
                    BRAND.to_string(),
                    customer.clone(),
                    format!("In-Reply-To: <m{}.{tag}@gen.test>\n", i - 1),
                ),
                _ => (
                    customer.clone(),
                    BRAND.to_string(),
                    format!(
                        "In-Reply-To: <m{}.{tag}@gen.test>\nReferences: <m{}.{tag}@gen.test> <m{}.{tag}@gen.test>\n",
                        i - 1,
                        i - 2,
                        i - 1
                    ),
                ),
            };
            format!(
                "From: {from}\nTo: {to}\nSubject: order {thread}\nDate: {date}\n\
                 Message-ID: <m{i}.{tag}@gen.test>\n{extra}X-Pad: {}\n\nBody of {i}.\n",
                "x".repeat(i % 500)
            )
        })
        .collect()
}

/// An mbox of `messages` as an mboxrd writer makes it (every line matching `>*From ` gets
/// one more `>`), each `From ` line naming the sender `sender` gives for the message.
pub fn mboxrd(messages: &[String], sender: impl Fn(&str) -> String) -> String {
    let mut out = String::new();
    for m in messages {
        out.push_str(&format!("From {} Mon Jan  1 00:00:00 2024\n", sender(m)));
        for line in m.lines() {
            if line.trim_start_matches('>').starts_with("From ") {
                out.push('>');
            }
            out.push_str(line);
            out.push('\n');
        }
        out.push('\n');
    }
    out
}

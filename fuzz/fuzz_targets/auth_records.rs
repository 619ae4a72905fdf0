//! Bytes into the parsers of sender authentication: mail-auth 0.12's DNS record parsers
//! (SPF, SPF macros, DKIM keys and reports, ATPS, DMARC), its header parsers
//! (DKIM-Signature, ARC-Message-Signature, ARC-Seal, ARC-Authentication-Results) and the
//! whole-message parse that verification starts with, then Postern's own reading of those
//! headers (src/auth: signature defects, a hop's DMARC result, the DMARC tree walk, the
//! Authentication-Results rewrite, organisational domains). Every parser gets every input:
//! the corpus holds records, header values and signed messages alike.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mail_auth::common::parse::TxtRecordParser;
use mail_auth::dkim::{Atps, DomainKeyReport};
use mail_auth::dmarc::Dmarc;
use mail_auth::spf::{Macro, Spf};
use postern::auth::fuzz_entry;
use postern::auth::org_domain;

/// Whether `data` may hold a CIDR prefix length that mail-auth 0.12.1 takes as zero: a `/`
/// followed by nothing but zeros (`/0`, `//00`, a bare `/`) or by more than three digits
/// (its digit accumulator wraps: `mx/2622220000000000000164152820656757655326220`). It
/// builds the mask of a zero length as `u32::MAX << 32` (`u128::MAX << 128`), a shift
/// overflow: a panic with overflow checks, a /32 mask without. That bug is known and
/// documented (docs/conformance/spf.md, tests/it/auth/spf_suites.rs); such inputs are kept from the
/// SPF parser (only) so that fuzzing goes on past it.
fn has_zero_prefix_length(data: &[u8]) -> bool {
    data.iter().enumerate().any(|(i, b)| {
        let digits: Vec<u8> = data[i + 1..]
            .iter()
            .take_while(|d| d.is_ascii_digit())
            .copied()
            .collect();
        *b == b'/' && (digits.len() > 3 || digits.iter().all(|d| *d == b'0'))
    })
}

fuzz_target!(|data: &[u8]| {
    let data = data.to_vec();
    postern_fuzz::run(move || {
        if !has_zero_prefix_length(&data) {
            let _ = Spf::parse(&data);
        }
        let _ = Macro::parse(&data);
        let _ = mail_auth::common::verify::DomainKey::parse(&data);
        let _ = DomainKeyReport::parse(&data);
        let _ = Atps::parse(&data);
        let _ = Dmarc::parse(&data);
        let _ = mail_auth::dkim::Signature::parse(&data);
        let _ = mail_auth::arc::Signature::parse(&data);
        let _ = mail_auth::arc::Seal::parse(&data);
        let _ = mail_auth::arc::Results::parse(&data);
        let _ = fuzz_entry::read_auth_headers(&data);

        let text = String::from_utf8_lossy(&data);
        let (a, b) = text.split_once('\n').unwrap_or((&text, ""));
        let normal = org_domain::normalize_domain(a);
        if let Some(d) = &normal {
            assert_eq!(
                org_domain::normalize_domain(d).as_ref(),
                Some(d),
                "normalising is not idempotent"
            );
        }
        assert_eq!(
            org_domain::relaxed_aligned(a, a),
            normal.is_some(),
            "a host name is aligned with itself"
        );
        let _ = org_domain::registrable_domain(a);
        let _ = org_domain::organizational_domain(a);
        let _ = org_domain::relaxed_aligned(a, b);
        for method in ["dmarc", "arc"] {
            let _ = fuzz_entry::rewrite_clause(b, method, "fail");
        }
    });
});

//! Bytes into the TNEF (winmail.dat) reader (src/ingest/tnef.rs).
//!
//! Checked beyond crashes: the documented bounds hold (no more attachments than the limit,
//! never more content bytes in all than the input holds), and `unpack` agrees with
//! `unpack_detailed`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern::ingest::tnef::{self, MAX_ATTACHMENTS};

fuzz_target!(|data: &[u8]| {
    let data = data.to_vec();
    postern_fuzz::run(move || {
        let detailed = tnef::unpack_detailed(&data);
        if let Ok(unpacked) = &detailed {
            assert!(unpacked.attachments.len() <= MAX_ATTACHMENTS);
            let total: usize = unpacked.attachments.iter().map(|a| a.data.len()).sum();
            assert!(
                total <= data.len(),
                "{total} bytes of attachments out of a {}-byte stream",
                data.len()
            );
        }
        match (tnef::unpack(&data), detailed) {
            (Ok(a), Ok(d)) => assert_eq!(a, d.attachments),
            (Err(e), Ok(d)) => assert!(d.attachments.is_empty() && d.damage == Some(e)),
            (Err(e), Err(d)) => assert_eq!(e, d),
            (Ok(_), Err(_)) => panic!("unpack succeeded where unpack_detailed failed"),
        }
        assert!(tnef::is_tnef(None, None, &data) || !data.starts_with(&[0x78, 0x9f, 0x3e, 0x22]));
    });
});

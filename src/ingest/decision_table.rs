//! Decision tables for ingest's unit tests: each case of a JSON file holds a small store's
//! facts ([`FakeRepository`]), one input and the decision it must get, and optionally the
//! look-ups that decision may cost (the common paths' count is what keeps intake fast).

use super::fake_repository::FakeRepository;
use crate::store::StoreError;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use std::fmt::Debug;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case<I, E> {
    name: String,
    #[serde(default)]
    store: FakeRepository,
    message: I,
    expect: E,
    /// The look-ups the decision makes, in order.
    #[serde(default)]
    lookups: Option<Vec<String>>,
}

/// Runs every case of `table` through `decide`; panics listing the cases that failed.
pub fn check<I, E>(
    table: &str,
    min_cases: usize,
    decide: impl Fn(&mut FakeRepository, I) -> Result<E, StoreError>,
) where
    I: DeserializeOwned,
    E: DeserializeOwned + PartialEq + Debug,
{
    let cases: Vec<Case<I, E>> = match serde_json::from_str(table) {
        Ok(cases) => cases,
        Err(e) => panic!("the table does not read: {e}"),
    };
    assert!(
        cases.len() >= min_cases,
        "the table lost cases: {}",
        cases.len()
    );
    let mut failures = Vec::new();
    for mut case in cases {
        let name = case.name;
        match decide(&mut case.store, case.message) {
            Err(e) => failures.push(format!("{name}: {e}")),
            Ok(got) if got != case.expect => {
                failures.push(format!("{name}: expected {:?}, got {got:?}", case.expect))
            }
            Ok(_) => match case.lookups {
                Some(allowed) if case.store.lookups != allowed => failures.push(format!(
                    "{name}: look-ups {:?}, expected {allowed:?}",
                    case.store.lookups
                )),
                _ => {}
            },
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

//! A key the server keeps for itself (from `server_secrets`), shared cheaply between handlers
//! and never printed.

use std::sync::Arc;

#[derive(Clone)]
pub struct ServerKey(Arc<[u8]>);

impl ServerKey {
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(bytes.into())
    }

    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for ServerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerKey(..)")
    }
}

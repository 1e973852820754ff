//! SSH/x509 key pairs, owned by a user and addressed by name.

use crate::ids::*;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KeyPair {
    pub serial: i64,
    pub name: String,
    pub user_id: UserId,
    pub public_key: String,
    pub fingerprint: String,
    /// "ssh" or "x509" (microversion 2.2).
    pub key_type: String,
    pub created_at: Timestamp,
}

//! Key pair persistence (per user, by name).

use async_trait::async_trait;
use nimbus_model::keypair::KeyPair;
use nimbus_model::{Result, UserId};

#[async_trait]
pub trait KeypairStore: Send + Sync {
    /// `AlreadyExists` if the user has a key pair of that name.
    async fn keypair_create(&self, keypair: KeyPair) -> Result<KeyPair>;
    async fn keypair_get(&self, user: UserId, name: String) -> Result<Option<KeyPair>>;
    /// Ordered by name.
    async fn keypairs_list(&self, user: UserId) -> Result<Vec<KeyPair>>;
    async fn keypair_delete(&self, user: UserId, name: String) -> Result<bool>;
}

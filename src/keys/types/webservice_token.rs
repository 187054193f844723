//! Moodle's web-service token (external_tokens): one per device and service, with a private
//! token beside it. The hot path: validated tokens are kept in memory.

use crate::keys::policy::{KeyPolicy, Lifetime, SecretKind};
use crate::keys::KeyType;

pub const ID: &str = "webservice_token";

pub fn key_type() -> KeyType {
    KeyType::new(
        ID,
        "Web-service tokens",
        "The mobile app on each device, scripts and integrations using web services.",
    )
    .with_policy(KeyPolicy {
        secret: SecretKind::Token,
        lifetime: Lifetime::TokenLifetime,
        cached: true,
        needs_service: true,
        expiry_told_once: true,
        use_counted_per_call: true,
        private_secret: true,
        signs_in: true,
        ..Default::default()
    })
}

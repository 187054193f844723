//! A browser signed in: the cookie holds the secret, the database its hash.

use crate::keys::policy::{KeyPolicy, Lifetime, NewClients, SecretKind};
use crate::keys::KeyType;

pub const ID: &str = "web_session";

pub fn key_type() -> KeyType {
    KeyType::new(ID, "Web sessions", "Browsers signed in to your account.").with_policy(KeyPolicy {
        secret: SecretKind::Long,
        lifetime: Lifetime::SessionTimeout,
        signs_in: true,
        new_clients: NewClients::Quiet,
        ..Default::default()
    })
}

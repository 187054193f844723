//! tool_mobile's auto-login key: the app opens the browser signed in with it, once, from the
//! address that asked, within a minute (Moodle's LOGIN_KEY_TTL).

use crate::keys::policy::{KeyPolicy, Lifetime, NewClients, SecretKind};
use crate::keys::KeyType;
use chrono::Duration;

pub const ID: &str = "tool_mobile";

/// How long an auto-login key lives.
pub const LIFETIME_SECONDS: i64 = 60;

pub fn key_type() -> KeyType {
    KeyType::new(ID, "Mobile auto-login keys", "Short-lived keys that sign the mobile app into the browser.")
        .with_policy(KeyPolicy {
            secret: SecretKind::Token,
            lifetime: Lifetime::Fixed(Duration::seconds(LIFETIME_SECONDS)),
            bound_to_address: true,
            single_use: true,
            signs_in: true,
            new_clients: NewClients::Quiet,
            ..Default::default()
        })
}

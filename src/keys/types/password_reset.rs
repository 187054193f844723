//! A password-reset link: mailed on request or made by a help desk, opened once, within half
//! an hour.

use crate::keys::policy::{KeyPolicy, Lifetime, SecretKind};
use crate::keys::KeyType;
use chrono::Duration;

pub const ID: &str = "password_reset";

/// How long a reset link can be opened.
pub const LIFETIME_MINUTES: i64 = 30;

pub fn key_type() -> KeyType {
    KeyType::new(ID, "Password reset links", "Pending links to reset your password.").with_policy(KeyPolicy {
        secret: SecretKind::Long,
        lifetime: Lifetime::Fixed(Duration::minutes(LIFETIME_MINUTES)),
        single_use: true,
        ..Default::default()
    })
}

//! A pending password-reset link (nothing issues these yet; listed so that a site whose Moodle
//! holds them shows them).

use crate::keys::policy::{KeyPolicy, SecretKind};
use crate::keys::KeyType;

pub const ID: &str = "password_reset";

pub fn key_type() -> KeyType {
    KeyType::new(ID, "Password reset links", "Pending links to reset your password.").with_policy(KeyPolicy {
        secret: SecretKind::Long,
        single_use: true,
        ..Default::default()
    })
}

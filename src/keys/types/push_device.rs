//! A phone registered for push notifications (Moodle's user_devices): no secret of its own.

use crate::keys::policy::{KeyPolicy, NewClients};
use crate::keys::KeyType;

pub const ID: &str = "push_device";

pub fn key_type() -> KeyType {
    KeyType::new(ID, "Push notification devices", "Devices registered to receive notifications.")
        .with_policy(KeyPolicy { signs_in: true, new_clients: NewClients::Quiet, ..Default::default() })
}

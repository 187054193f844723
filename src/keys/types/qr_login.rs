//! The key behind the QR code that signs the mobile app in: ten minutes (Moodle's default
//! qrkeyttl), from the address that made it, once.

use crate::keys::policy::{AddressTemplate, KeyPolicy, Lifetime, SecretKind, SelfService};
use crate::keys::KeyType;
use chrono::Duration;

pub const ID: &str = "tool_mobile/qrlogin";

pub fn key_type() -> KeyType {
    KeyType::new(ID, "QR login keys", "Short-lived keys behind a QR code that signs the mobile app in.")
        .with_policy(KeyPolicy {
            secret: SecretKind::Token,
            lifetime: Lifetime::Fixed(Duration::minutes(10)),
            bound_to_address: true,
            single_use: true,
            signs_in: true,
            ..Default::default()
        })
        .created_by_owner(SelfService {
            key_name: "QR code for the mobile app",
            shown_as: "QR code content",
            address: AddressTemplate("moodlemobile://{root}?qrlogin={secret}&userid={userid}"),
            qr_code: true,
        })
}

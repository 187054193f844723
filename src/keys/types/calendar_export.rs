//! A calendar application's subscription to the owner's calendar (Moodle's calendar export
//! `authtoken`).

use crate::keys::policy::{AddressTemplate, KeyPolicy, SecretKind, SelfService};
use crate::keys::KeyType;

pub const ID: &str = "calendar_export";

pub fn key_type() -> KeyType {
    KeyType::new(ID, "Calendar export keys", "Let calendar applications subscribe to your calendar without signing in.")
        .with_policy(KeyPolicy { secret: SecretKind::Token, ..Default::default() })
        .created_by_owner(SelfService {
            key_name: "Calendar subscription",
            shown_as: "Calendar subscription address",
            address: AddressTemplate(
                "{root}/calendar/export_execute.php?userid={userid}&authtoken={secret}&preset_what=all&preset_time=recentupcoming",
            ),
            qr_code: false,
        })
}

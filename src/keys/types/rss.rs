//! A feed reader's key to the owner's RSS feeds (Moodle's user_private_key, script "rss").

use crate::keys::policy::{AddressTemplate, KeyPolicy, SecretKind, SelfService};
use crate::keys::KeyType;

pub const ID: &str = "rss";

pub fn key_type() -> KeyType {
    KeyType::new(ID, "RSS feed keys", "Let feed readers fetch your RSS feeds without signing in.")
        .with_policy(KeyPolicy { secret: SecretKind::Token, ..Default::default() })
        .created_by_owner(SelfService {
            key_name: "RSS feed key",
            shown_as: "Feed address",
            address: AddressTemplate("{root}/rss/file.php/1/{secret}/user/{userid}/rss.xml"),
            qr_code: false,
        })
}

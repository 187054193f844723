//! Web-service tokens per device (MDL-73088): the same device signing in again replaces its own
//! token; a second device gets a second token, listed and revoked on its own.

use super::ops::{self, Actor, IssuedKey, KeyRequest, Revocation, Scope};
use super::{KeyTypeRegistry, WEBSERVICE_TOKEN};
use crate::db::keys::Selection;
use crate::db::{DbResult, Write};
use crate::domain::secret::ClearSecret;
use crate::domain::user_agent::{describe_device, describe_user_agent};
use chrono::{Duration, NaiveDateTime};

/// What a client tells about the device it runs on.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Device {
    pub device_id: Option<String>,
    pub name: Option<String>,
    pub model: Option<String>,
    pub platform: Option<String>,
    pub os_version: Option<String>,
    pub app_version: Option<String>,
    pub user_agent: String,
}

impl Device {
    /// Who the device is. With an explicit identifier, that; otherwise this sign-in is a device
    /// of its own (a user agent is not an identity: two phones of one model send the same one),
    /// until the app registers the device and the token is linked to it (`app_device_id`).
    pub fn identity(&self) -> String {
        match self.device_id.as_deref().map(str::trim).filter(|d| !d.is_empty()) {
            Some(id) => format!("id:{}", id.chars().take(200).collect::<String>()),
            None => format!("signin:{}", &ClearSecret::token().expose()[..16]),
        }
    }

    /// "Pixel 8 · Android 15 · Moodle app 4.4", or the user agent in words.
    pub fn display_name(&self) -> String {
        describe_device(
            self.name.as_deref(),
            self.model.as_deref(),
            self.platform.as_deref(),
            self.os_version.as_deref(),
            self.app_version.as_deref(),
        )
        .unwrap_or_else(|| describe_user_agent(&self.user_agent))
    }
}

/// The identity of a device the app registered (core_user_add_user_device): its app and uuid.
pub fn app_device_id(appid: &str, uuid: &str) -> String {
    format!("app:{appid}:{uuid}")
}

/// The phone's uuid in an identity made by `app_device_id`; `None` for any other identity.
pub fn app_device_uuid(device_id: &str) -> Option<&str> {
    Some(device_id.strip_prefix("app:")?.split_once(':')?.1)
}

pub struct TokenGrant<'a> {
    pub user_id: i64,
    pub service_id: i64,
    pub device: &'a Device,
    pub valid_for: Duration,
}

/// Revokes the device's previous token for the service (if any) and issues a new one, with a
/// private token, in the caller's transaction.
pub fn issue_for_device(
    conn: &mut Write,
    registry: &KeyTypeRegistry,
    grant: &TokenGrant,
    actor: &Actor,
    now: NaiveDateTime,
) -> DbResult<IssuedKey> {
    let identity = grant.device.identity();
    let selection = Selection::Device {
        device_id: identity.clone(),
        key_type: WEBSERVICE_TOKEN.into(),
        service_id: Some(grant.service_id),
    };
    let replaced = Revocation {
        user_id: grant.user_id,
        selection,
        scope: Scope::Everything,
        actor: actor.clone(),
        reason: "replaced by a new sign-in from the same device".into(),
    };
    ops::revoke(conn, registry, &replaced, now)?;
    let request = KeyRequest {
        user_id: grant.user_id,
        key_type: WEBSERVICE_TOKEN.into(),
        name: grant.device.display_name(),
        service_id: Some(grant.service_id),
        device_id: Some(identity),
        details: serde_json::to_string(grant.device).ok(),
        valid_until: Some(now + grant.valid_for),
        ..Default::default()
    };
    ops::issue(conn, registry, request, actor, now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_registered_phone_is_found_by_its_uuid() {
        let id = app_device_id("com.moodle.moodlemobile", "0f1e-2d3c");
        assert_eq!(app_device_uuid(&id), Some("0f1e-2d3c"));
        assert_eq!(app_device_uuid("signin:0123abcd"), None);
        assert_eq!(app_device_uuid("id:app:x"), None);
    }
}

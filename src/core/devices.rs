//! The mobile app's keys: a token per device and service, the phone's push registration, the
//! auto-login key that opens the browser signed in, and QR-code sign-in.

use super::error::CoreError;
use super::valid_key::{KeyOwner, ValidKey};
use super::validate::Expected;
use super::{Client, Core, CoreResult};
use crate::db::keys::Selection;
use crate::db::models::KeyRow;
use crate::domain::ip_restriction::IpRestriction;
use crate::domain::secret::SecretHash;
use crate::domain::time::now;
use crate::domain::user_agent::{describe_device, describe_user_agent};
use crate::keys::device_tokens::{app_device_id, issue_for_device, Device, TokenGrant};
use crate::keys::ops::{self, KeyRequest, Revocation, Scope};
use crate::keys::{AUTOLOGIN, PUSH_DEVICE, QR_LOGIN, WEBSERVICE_TOKEN};
use chrono::Duration;
use serde_json::{json, Value};

/// The service the Moodle app's tokens are for.
pub const MOBILE_SERVICE: &str = "moodle_mobile_app";

/// An auto-login key can be asked for this often (Moodle's tool_mobile_autologinmintimebetweenreq).
pub const AUTOLOGIN_MIN_MINUTES_BETWEEN: i64 = 6;

/// A token just issued: shown to its client once.
#[derive(Debug)]
pub struct GrantedToken {
    pub token: String,
    /// Moodle's private token; handed out only over HTTPS and never to site admins.
    pub private_token: Option<String>,
}

/// What the app tells about the phone it registers (core_user_add_user_device).
#[derive(Clone, Debug)]
pub struct DeviceRegistration {
    pub appid: String,
    pub name: String,
    pub model: String,
    pub platform: String,
    pub version: String,
    pub pushid: String,
    pub uuid: String,
    pub publickey: Option<String>,
}

impl Core {
    /// A new token of a device for a service, for a user who has just proved who they are:
    /// the service must exist and be on, and web-service tokens must be switched on.
    pub async fn grant_token(
        &self,
        user: &KeyOwner,
        service: &str,
        device: &Device,
        client: &Client,
    ) -> CoreResult<GrantedToken> {
        let shortname = service.trim().to_owned();
        let default_on = self.registry.on_by_default(WEBSERVICE_TOKEN);
        let (service, type_enabled) = self
            .db
            .read(move |conn| {
                Ok((
                    crate::db::services::find_by_shortname(conn, &shortname)?,
                    crate::db::key_types::enabled(conn, WEBSERVICE_TOKEN, default_on)?,
                ))
            })
            .await?;
        let service = service.filter(|s| s.enabled).ok_or(CoreError::ServiceUnavailable)?;
        if !type_enabled {
            return Err(CoreError::TokensDisabled(service.shortname));
        }
        self.issue_device_token(user, service.id, device, client).await
    }

    /// Replaces the device's token for a service with a new one.
    async fn issue_device_token(
        &self,
        user: &KeyOwner,
        service_id: i64,
        device: &Device,
        client: &Client,
    ) -> CoreResult<GrantedToken> {
        let registry = self.registry.clone();
        let actor = client.actor(Some(user.id));
        let device = device.clone();
        let user_id = user.id;
        let valid_for = self.lifetimes().token;
        let issued = self
            .db
            .write(move |write| {
                let grant = TokenGrant { user_id, service_id, device: &device, valid_for };
                issue_for_device(write, &registry, &grant, &actor, now())
            })
            .await?;
        let token = issued.secret.ok_or_else(|| CoreError::Invalid("token issued without a secret".into()))?;
        // As Moodle: the private token only over HTTPS, and never for a site admin.
        let private_token = issued
            .private_token
            .filter(|_| self.config.served_over_https() && !user.is_site_admin)
            .map(|p| p.expose().to_owned());
        Ok(GrantedToken { token: token.expose().to_owned(), private_token })
    }

    /// Moodle's `check_autologin_prerequisites`: HTTPS, and not a site admin.
    pub fn check_autologin_prerequisites(&self, user: &KeyOwner) -> CoreResult<()> {
        if !self.config.served_over_https() {
            return Err(CoreError::HttpsRequired);
        }
        if user.is_site_admin {
            return Err(CoreError::NotForSiteAdmins);
        }
        Ok(())
    }

    /// tool_mobile_get_tokens_for_qr_login: the app trades the single-use key behind a QR
    /// code for a token of its own, for the mobile service.
    pub async fn qr_login(
        &self,
        qrloginkey: &str,
        user_id: i64,
        device: &Device,
        client: &Client,
    ) -> CoreResult<GrantedToken> {
        let key = self.validate(qrloginkey, Expected { key_type: QR_LOGIN, owner: Some(user_id) }, client).await?;
        self.check_autologin_prerequisites(&key.user)?;
        let service = self
            .db
            .read(|conn| crate::db::services::find_by_shortname(conn, MOBILE_SERVICE))
            .await?
            .filter(|s| s.enabled)
            .ok_or(CoreError::ServiceUnavailable)?;
        self.issue_device_token(&key.user, service.id, device, client).await
    }

    /// autologin.php: the browser trades the app's single-use key for a session of its own.
    pub async fn auto_login(
        &self,
        key: &str,
        user_id: i64,
        client: &Client,
    ) -> CoreResult<(std::sync::Arc<KeyOwner>, crate::domain::secret::ClearSecret)> {
        let key = self.validate(key, Expected { key_type: AUTOLOGIN, owner: Some(user_id) }, client).await?;
        self.check_autologin_prerequisites(&key.user)?;
        let cookie = self.start_session(key.user.id, client).await?;
        Ok((key.user.clone(), cookie))
    }

    /// tool_mobile_get_autologin_key: a one-minute key, bound to the caller's address, asked
    /// for with the token's private token, at most every few minutes.
    pub async fn autologin_key(
        &self,
        token: &ValidKey,
        private_token: Option<&str>,
        client: &Client,
    ) -> CoreResult<String> {
        self.check_autologin_prerequisites(&token.user)?;
        let private_token = private_token.ok_or(CoreError::PrivateTokenMismatch)?;
        let user_id = token.user.id;
        let now = now();
        let since = now - Duration::minutes(AUTOLOGIN_MIN_MINUTES_BETWEEN);
        // The lockout is counted from the last key issued, kept in the database so every instance agrees.
        let recent = self
            .db
            .read(move |conn| crate::db::keys::latest_created(conn, user_id, AUTOLOGIN))
            .await?
            .is_some_and(|at| at > since);
        if recent {
            return Err(CoreError::TooSoon(AUTOLOGIN_MIN_MINUTES_BETWEEN));
        }
        let matches =
            token.private_hash.as_deref().is_some_and(|h| SecretHash::from_stored(h.to_owned()).matches(private_token));
        if !matches {
            return Err(CoreError::PrivateTokenMismatch);
        }
        let actor = client.actor(Some(user_id));
        let request = KeyRequest {
            user_id,
            key_type: AUTOLOGIN.into(),
            name: "Mobile app auto-login".into(),
            ip_restriction: IpRestriction::parse(&client.ip_string()).ok().flatten(),
            valid_until: self.registry.policy(AUTOLOGIN).lifetime.valid_until(now, self.lifetimes()),
            ..Default::default()
        };
        let replaced = Revocation {
            user_id,
            selection: Selection::OfType(AUTOLOGIN.into()),
            scope: Scope::Everything,
            actor: actor.clone(),
            reason: "replaced by a new auto-login key".into(),
        };
        let issued = self.issue_replacing(replaced, request, now).await?;
        Ok(issued.secret.map(|s| s.expose().to_owned()).unwrap_or_default())
    }

    /// core_user_add_user_device. Registers the phone for push (once per uuid and app), names
    /// the calling token after the device and links it to it; the same device's earlier tokens
    /// for the service are replaced, and only those. Whether the push id was already stored.
    pub async fn register_device(
        &self,
        token: &ValidKey,
        device: DeviceRegistration,
        client: &Client,
    ) -> CoreResult<bool> {
        if device.uuid.is_empty() || device.appid.is_empty() {
            return Err(CoreError::Invalid("uuid and appid must not be empty".into()));
        }
        let (user_id, token_key_id) = (token.user.id, token.key_id);
        let service_id = token.service.as_ref().map(|s| s.service.id);
        let app_version = moodle_app_version(&client.user_agent);
        let device_name = describe_device(
            Some(&device.name),
            Some(&device.model),
            Some(&device.platform),
            Some(&device.version),
            app_version.as_deref(),
        )
        .unwrap_or_else(|| describe_user_agent(&client.user_agent));
        let details = json!({
            "appid": device.appid, "name": device.name, "model": device.model, "platform": device.platform,
            "version": device.version, "pushid": device.pushid, "uuid": device.uuid, "publickey": device.publickey,
            "token_key_id": token_key_id,
        })
        .to_string();
        let actor = client.actor(Some(user_id));
        let registry = self.registry.clone();
        let device_id = app_device_id(&device.appid, &device.uuid);
        let duplicate = self
            .db
            .write(move |write| {
                // This token is the device's now; the device's earlier tokens for the service go.
                let token = crate::db::keys::find(write, token_key_id)?;
                let token_details = token.as_ref().and_then(|k| k.details.clone());
                let merged = merge_details(token_details.as_deref(), &details);
                // A name the person chose ("Alice's Pixel") outlives the app's registering again.
                let name = match &token {
                    Some(k) if named_by_owner(k.details.as_deref()) => k.name.clone(),
                    _ => device_name.clone(),
                };
                crate::db::keys::link_device(write, token_key_id, &device_id, &name, &merged)?;
                let earlier = crate::db::keys::active_for_device(write, user_id, WEBSERVICE_TOKEN, &device_id)?;
                for old in earlier.iter().filter(|k| k.id != token_key_id && k.service_id == service_id) {
                    let replaced = Revocation {
                        user_id,
                        selection: Selection::One(old.id),
                        scope: Scope::Everything,
                        actor: actor.clone(),
                        reason: "replaced by a new sign-in from the same device".into(),
                    };
                    ops::revoke(write, &registry, &replaced, now())?;
                }
                let existing = crate::db::keys::active_for_device(write, user_id, PUSH_DEVICE, &device.uuid)?;
                if existing.iter().any(|k| detail(k, "pushid").as_deref() == Some(&device.pushid)) {
                    return Ok(true);
                }
                match existing.iter().find(|k| detail(k, "appid").as_deref() == Some(&device.appid)) {
                    Some(row) => crate::db::keys::rename(write, row.id, &device_name, Some(&details))?,
                    None => {
                        let request = KeyRequest {
                            user_id,
                            key_type: PUSH_DEVICE.into(),
                            name: device_name.clone(),
                            device_id: Some(device.uuid.clone()),
                            details: Some(details.clone()),
                            ..Default::default()
                        };
                        ops::issue(write, &registry, request, &actor, now())?;
                    }
                }
                Ok(false)
            })
            .await?;
        Ok(duplicate)
    }

    /// core_user_update_user_device_public_key: whether the device was found and updated.
    pub async fn update_device_public_key(
        &self,
        user_id: i64,
        uuid: &str,
        appid: &str,
        publickey: String,
    ) -> CoreResult<bool> {
        let (uuid, appid) = (uuid.to_owned(), appid.to_owned());
        Ok(self
            .db
            .write(move |write| {
                let rows = crate::db::keys::active_for_device(write, user_id, PUSH_DEVICE, &uuid)?;
                let Some(row) = rows.iter().find(|k| detail(k, "appid").as_deref() == Some(&appid)) else {
                    return Ok(false);
                };
                let mut details: Value =
                    row.details.as_deref().and_then(|d| serde_json::from_str(d).ok()).unwrap_or_else(|| json!({}));
                details["publickey"] = Value::String(publickey);
                crate::db::keys::rename(write, row.id, &row.name, Some(&details.to_string()))?;
                Ok(true)
            })
            .await?)
    }

    /// core_user_remove_user_device: the app forgets the site on this phone. How many
    /// registrations were removed (all the uuid's, or only `appid`'s when given).
    pub async fn remove_device(&self, user_id: i64, uuid: &str, appid: &str, client: &Client) -> CoreResult<usize> {
        let (uuid, appid) = (uuid.to_owned(), appid.to_owned());
        let actor = client.actor(Some(user_id));
        let registry = self.registry.clone();
        Ok(self
            .db
            .write(move |write| {
                let rows = crate::db::keys::active_for_device(write, user_id, PUSH_DEVICE, &uuid)?;
                let mut removed = 0;
                for row in rows.iter().filter(|r| appid.is_empty() || detail(r, "appid").as_deref() == Some(&appid)) {
                    let request = Revocation {
                        user_id,
                        selection: Selection::One(row.id),
                        scope: Scope::Everything,
                        actor: actor.clone(),
                        reason: "device removed by the app".into(),
                    };
                    removed += ops::revoke(write, &registry, &request, now())?;
                }
                Ok(removed)
            })
            .await?)
    }
}

/// "4.4" from "… MoodleMobile 4.4.0 (44004)".
fn moodle_app_version(user_agent: &str) -> Option<String> {
    let rest = &user_agent[user_agent.find("MoodleMobile")? + "MoodleMobile".len()..];
    let version = rest.split_whitespace().next()?;
    version.chars().next()?.is_ascii_digit().then(|| version.to_owned())
}

fn detail(key: &KeyRow, field: &str) -> Option<String> {
    let value: Value = serde_json::from_str(key.details.as_deref()?).ok()?;
    value.get(field)?.as_str().map(str::to_owned)
}

/// Whether the person renamed the key (`own_keys::rename_own` marks its details).
pub(super) fn named_by_owner(details: Option<&str>) -> bool {
    details.and_then(|d| serde_json::from_str::<Value>(d).ok()).is_some_and(|d| d["named_by_owner"] == json!(true))
}

/// `details` marked as renamed by the person; details that are not a JSON object (a plugin's
/// own) are left as they are.
pub(super) fn mark_named_by_owner(details: Option<&str>) -> Option<String> {
    let Some(details) = details else { return Some(json!({"named_by_owner": true}).to_string()) };
    match serde_json::from_str::<Value>(details) {
        Ok(Value::Object(mut map)) => {
            map.insert("named_by_owner".into(), json!(true));
            Some(Value::Object(map).to_string())
        }
        _ => Some(details.to_owned()),
    }
}

fn merge_details(existing: Option<&str>, device: &str) -> String {
    let mut base: Value = existing.and_then(|e| serde_json::from_str(e).ok()).unwrap_or_else(|| json!({}));
    if let (Some(map), Ok(device)) = (base.as_object_mut(), serde_json::from_str::<Value>(device)) {
        map.insert("push_device".into(), device);
    }
    base.to_string()
}

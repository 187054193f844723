//! The app's device registrations (Moodle's user_devices): a phone registers for push
//! notifications with its uuid, and from then on its token knows which device it is on.

use super::error::MoodleError;
use super::functions::Call;
use super::params::Params;
use crate::db::keys::Selection;
use crate::domain::time::now;
use crate::domain::user_agent::{describe_device, describe_user_agent};
use crate::keys::device_tokens::app_device_id;
use crate::keys::ops::{self, Actor, KeyRequest, Scope};
use crate::keys::{PUSH_DEVICE, WEBSERVICE_TOKEN};
use serde_json::{json, Value};

fn text_param(params: &Params, name: &str, max: usize) -> Result<String, MoodleError> {
    Ok(params.required_text(name)?.trim().chars().take(max).collect())
}

/// core_user_add_user_device. Registers the phone for push (once per uuid and app), names the
/// calling token after the device and links it to it; an earlier token of the same device
/// (the same phone signing in again) is replaced, and only that one.
pub async fn add_user_device(call: Call<'_>) -> Result<Value, MoodleError> {
    let p = &call.params;
    let appid = text_param(p, "appid", 100)?;
    let name = text_param(p, "name", 100)?;
    let model = text_param(p, "model", 100)?;
    let platform = text_param(p, "platform", 100)?;
    let version = text_param(p, "version", 100)?;
    let pushid = text_param(p, "pushid", 1000)?;
    let uuid = text_param(p, "uuid", 255)?;
    if uuid.is_empty() || appid.is_empty() {
        return Err(MoodleError::invalid_parameter("uuid and appid must not be empty"));
    }
    let publickey = p.text("publickey")?.map(|k| k.chars().take(4096).collect::<String>());
    let user_id = call.token.user.id;
    let token_key_id = call.token.key_id;
    let service_id = call.token.service.service.id;
    let app_version = moodle_app_version(&call.client.user_agent);
    let device_name =
        describe_device(Some(&name), Some(&model), Some(&platform), Some(&version), app_version.as_deref())
            .unwrap_or_else(|| describe_user_agent(&call.client.user_agent));
    let details = json!({
        "appid": appid, "name": name, "model": model, "platform": platform, "version": version,
        "pushid": pushid, "uuid": uuid, "publickey": publickey, "token_key_id": token_key_id,
    })
    .to_string();
    let actor = Actor { user_id: Some(user_id), ip: Some(call.client.ip_string()) };
    let registry = call.state.registry.clone();
    let device_id = app_device_id(&appid, &uuid);
    let duplicate = call
        .state
        .db
        .write(move |conn| {
            // This token is the device's now; the device's earlier tokens for the service go.
            let token_details = crate::db::keys::find(conn, token_key_id)?.and_then(|k| k.details);
            crate::db::keys::link_device(
                conn,
                token_key_id,
                &device_id,
                &device_name,
                &merge_details(token_details.as_deref(), &details),
            )?;
            let earlier = crate::db::keys::active_for_device(conn, user_id, WEBSERVICE_TOKEN, &device_id)?;
            for old in earlier.iter().filter(|k| k.id != token_key_id && k.service_id == Some(service_id)) {
                let reason = "replaced by a new sign-in from the same device";
                ops::revoke(
                    conn,
                    &registry,
                    user_id,
                    &Selection::One(old.id),
                    Scope::Everything,
                    &actor,
                    reason,
                    now(),
                )?;
            }

            let existing = crate::db::keys::active_for_device(conn, user_id, PUSH_DEVICE, &uuid)?;
            if existing.iter().any(|k| detail(k.details.as_deref(), "pushid").as_deref() == Some(&pushid)) {
                return Ok(true);
            }
            let same_app = existing.iter().find(|k| detail(k.details.as_deref(), "appid").as_deref() == Some(&appid));
            match same_app {
                Some(row) => crate::db::keys::rename(conn, row.id, &device_name, Some(&details))?,
                None => {
                    let request = KeyRequest {
                        user_id,
                        key_type: PUSH_DEVICE.into(),
                        name: device_name.clone(),
                        device_id: Some(uuid.clone()),
                        details: Some(details.clone()),
                        ..Default::default()
                    };
                    ops::issue(conn, request, &actor, now())?;
                }
            }
            Ok(false)
        })
        .await?;
    if duplicate {
        let pushid = call.params.required_text("pushid")?;
        return Ok(
            json!([[{"item": pushid, "warningcode": "existingkeyforthisuser", "message": "This key is already stored for this user"}]]),
        );
    }
    Ok(json!([]))
}

/// core_user_update_user_device_public_key: the app's key for encrypted push notifications.
pub async fn update_public_key(call: Call<'_>) -> Result<Value, MoodleError> {
    let uuid = text_param(&call.params, "uuid", 255)?;
    let appid = text_param(&call.params, "appid", 100)?;
    let publickey: String = call.params.required_text("publickey")?.chars().take(4096).collect();
    let user_id = call.token.user.id;
    let lookup = uuid.clone();
    let updated = call
        .state
        .db
        .write(move |conn| {
            let rows = crate::db::keys::active_for_device(conn, user_id, PUSH_DEVICE, &lookup)?;
            let Some(row) = rows.iter().find(|k| detail(k.details.as_deref(), "appid").as_deref() == Some(&appid))
            else {
                return Ok(false);
            };
            let mut details: Value =
                row.details.as_deref().and_then(|d| serde_json::from_str(d).ok()).unwrap_or_else(|| json!({}));
            details["publickey"] = Value::String(publickey);
            crate::db::keys::rename(conn, row.id, &row.name, Some(&details.to_string()))?;
            Ok(true)
        })
        .await?;
    let warnings = if updated {
        json!([])
    } else {
        json!([{"item": uuid, "warningcode": "devicedoesnotexist", "message": "The device doesn't exists in the database"}])
    };
    Ok(json!({"status": updated, "warnings": warnings}))
}

/// core_user_remove_user_device: the app forgets the site on this phone.
pub async fn remove_user_device(call: Call<'_>) -> Result<Value, MoodleError> {
    let uuid = text_param(&call.params, "uuid", 255)?;
    let appid = call.params.text("appid")?.unwrap_or("").trim().to_owned();
    let (state, user_id) = (call.state, call.token.user.id);
    let actor = Actor { user_id: Some(user_id), ip: Some(call.client.ip_string()) };
    let registry = state.registry.clone();
    let uuid_for_query = uuid.clone();
    let removed = state
        .db
        .write(move |conn| {
            let rows = crate::db::keys::active_for_device(conn, user_id, PUSH_DEVICE, &uuid_for_query)?;
            let mut removed = 0;
            for row in rows
                .iter()
                .filter(|r| appid.is_empty() || detail(r.details.as_deref(), "appid").as_deref() == Some(&appid))
            {
                let reason = "device removed by the app";
                removed += ops::revoke(
                    conn,
                    &registry,
                    user_id,
                    &Selection::One(row.id),
                    Scope::Everything,
                    &actor,
                    reason,
                    now(),
                )?;
            }
            Ok(removed)
        })
        .await?;
    let warnings = if removed == 0 {
        json!([{"item": uuid, "warningcode": "devicedoesnotexist", "message": "The device doesn't exists in the database"}])
    } else {
        json!([])
    };
    Ok(json!({"removed": removed > 0, "warnings": warnings}))
}

/// "4.4" from "… MoodleMobile 4.4.0 (44004)".
fn moodle_app_version(user_agent: &str) -> Option<String> {
    let rest = &user_agent[user_agent.find("MoodleMobile")? + "MoodleMobile".len()..];
    let version = rest.split_whitespace().next()?;
    version.chars().next()?.is_ascii_digit().then(|| version.to_owned())
}

fn detail(details: Option<&str>, field: &str) -> Option<String> {
    let value: Value = serde_json::from_str(details?).ok()?;
    value.get(field)?.as_str().map(str::to_owned)
}

fn merge_details(existing: Option<&str>, device: &str) -> String {
    let mut base: Value = existing.and_then(|e| serde_json::from_str(e).ok()).unwrap_or_else(|| json!({}));
    if let (Some(map), Ok(device)) = (base.as_object_mut(), serde_json::from_str::<Value>(device)) {
        map.insert("push_device".into(), device);
    }
    base.to_string()
}

//! The web-service functions served, with Moodle's names, parameters and result fields.

use super::auth::AuthenticatedToken;
use super::error::MoodleError;
use super::params::Params;
use crate::app::State;
use crate::db::keys::Selection;
use crate::domain::time::{now, to_unix};
use crate::domain::user_agent::{describe_device, describe_user_agent};
use crate::keys::ops::{self, Actor, KeyRequest, Scope, SecretKind};
use crate::keys::{AUTOLOGIN, PUSH_DEVICE};
use crate::web::client::ClientInfo;
use chrono::Duration;
use serde_json::{json, Value};

/// The functions of the `moodle_mobile_app` service on a new site.
pub const MOBILE_APP_FUNCTIONS: &[&str] = &[
    "core_webservice_get_site_info",
    "core_user_add_user_device",
    "core_user_remove_user_device",
    "tool_mobile_get_autologin_key",
    "tool_mobile_get_public_config",
    "tool_mobile_get_tokens_for_qr_login",
    "local_userkeys_get_my_keys",
    "local_userkeys_revoke_my_key",
];

/// The Moodle version this site reports (4.5); clients gate features on it.
pub const MOODLE_VERSION: &str = "2024100700";
pub const MOODLE_RELEASE: &str = "4.5 (Build: 20241007) userkeys";

/// An auto-login key lives 60 seconds (Moodle's LOGIN_KEY_TTL) and can be asked for every 6 minutes.
pub const AUTOLOGIN_KEY_SECONDS: i64 = 60;
pub const AUTOLOGIN_MIN_MINUTES_BETWEEN: i64 = 6;

pub struct Call<'a> {
    pub state: &'a State,
    pub token: &'a AuthenticatedToken,
    pub params: Params,
    pub client: &'a ClientInfo,
}

pub fn exists(function: &str) -> bool {
    MOBILE_APP_FUNCTIONS.contains(&function)
}

/// A function's result: a JSON value, or JSON already written (for the hottest function).
pub enum Reply {
    Value(Value),
    Json(String),
}

pub async fn dispatch(function: &str, call: Call<'_>) -> Result<Reply, MoodleError> {
    if function == "core_webservice_get_site_info" {
        return Ok(Reply::Json(super::site_info::render(call.state, call.token)));
    }
    let value = match function {
        "tool_mobile_get_public_config" => Ok(public_config(call.state)),
        "core_user_add_user_device" => add_user_device(call).await,
        "core_user_remove_user_device" => remove_user_device(call).await,
        "tool_mobile_get_autologin_key" => autologin_key(call).await,
        "tool_mobile_get_tokens_for_qr_login" => {
            super::qrlogin::tokens_for_qr_login(call.state, &call.params, call.client).await
        }
        "local_userkeys_get_my_keys" => my_keys(call).await,
        "local_userkeys_revoke_my_key" => revoke_my_key(call).await,
        other => Err(MoodleError::unknown_function(other)),
    }?;
    Ok(Reply::Value(value))
}

pub fn wwwroot(state: &State) -> String {
    site_root(&state.config)
}

pub fn site_root(config: &crate::config::Config) -> String {
    config.wwwroot_or(&format!("http://{}", config.bind))
}

/// What the app reads before anyone signs in.
pub fn public_config(state: &State) -> Value {
    let root = wwwroot(state);
    json!({
        "wwwroot": root,
        "httpswwwroot": root,
        "sitename": state.config.site_name,
        "guestlogin": 0,
        "rememberusername": 2,
        "authloginviaemail": 0,
        "registerauth": "",
        "forgottenpasswordurl": "",
        "authinstructions": "",
        "authnoneenabled": 0,
        "enablewebservices": 1,
        "enablemobilewebservice": 1,
        "maintenanceenabled": 0,
        "maintenancemessage": "",
        "typeoflogin": 1,
        "launchurl": format!("{root}/admin/tool/mobile/launch.php"),
        "mobilecssurl": "",
        "tool_mobile_disabledfeatures": "",
        "country": "",
        "agedigitalconsentverification": false,
        "supportpage": "",
        "supportavailability": 0,
        "autolang": 1,
        "lang": "en",
        "langmenu": 0,
        "langlist": "",
        "locale": "en_AU.UTF-8",
        "tool_mobile_minimumversion": "",
        "tool_mobile_iosappid": "633359593",
        "tool_mobile_androidappid": "com.moodle.moodlemobile",
        "tool_mobile_setuplink": "https://download.moodle.org/mobile",
        "tool_mobile_qrcodetype": 2,
        "warnings": [],
        "showloginform": 1,
    })
}

fn text_param(params: &Params, name: &str, max: usize) -> Result<String, MoodleError> {
    Ok(params.required_text(name)?.trim().chars().take(max).collect())
}

async fn add_user_device(call: Call<'_>) -> Result<Value, MoodleError> {
    let p = &call.params;
    let appid = text_param(p, "appid", 100)?;
    let name = text_param(p, "name", 100)?;
    let model = text_param(p, "model", 100)?;
    let platform = text_param(p, "platform", 100)?;
    let version = text_param(p, "version", 100)?;
    let pushid = text_param(p, "pushid", 1000)?;
    let uuid = text_param(p, "uuid", 255)?;
    let publickey = p.text("publickey")?.map(|k| k.chars().take(4096).collect::<String>());
    let user_id = call.token.user.id;
    let token_key_id = call.token.key_id;
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
    let duplicate = call
        .state
        .db
        .write(move |conn| {
            let existing = crate::db::keys::active_for_device(conn, user_id, PUSH_DEVICE, &uuid)?;
            let same_push = existing.iter().any(|k| detail(k.details.as_deref(), "pushid").as_deref() == Some(&pushid));
            // The token that registered this device now carries the device's name.
            let token_details = crate::db::keys::find(conn, token_key_id)?.and_then(|k| k.details);
            crate::db::keys::rename(
                conn,
                token_key_id,
                &device_name,
                Some(&merge_details(token_details.as_deref(), &details)),
            )?;
            if same_push {
                return Ok(true);
            }
            let same_app: Vec<_> = existing
                .into_iter()
                .filter(|k| detail(k.details.as_deref(), "appid").as_deref() == Some(&appid))
                .collect();
            if let Some(row) = same_app.first() {
                crate::db::keys::rename(conn, row.id, &device_name, Some(&details))?;
            } else {
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

async fn remove_user_device(call: Call<'_>) -> Result<Value, MoodleError> {
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
                removed += ops::revoke(
                    conn,
                    &registry,
                    user_id,
                    &Selection::One(row.id),
                    Scope::Everything,
                    &actor,
                    "device removed by the app",
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

pub fn is_moodle_app(user_agent: &str) -> bool {
    user_agent.to_ascii_lowercase().contains("moodlemobile")
}

/// Moodle's `check_autologin_prerequisites`.
pub fn check_autologin_prerequisites(state: &State, is_site_admin: bool) -> Result<(), MoodleError> {
    if !state.config.served_over_https() {
        return Err(MoodleError::https_required());
    }
    if is_site_admin {
        return Err(MoodleError::autologin_not_allowed_to_admins());
    }
    Ok(())
}

async fn autologin_key(call: Call<'_>) -> Result<Value, MoodleError> {
    let (state, token) = (call.state, call.token);
    if !is_moodle_app(&call.client.user_agent) {
        return Err(MoodleError::app_required());
    }
    check_autologin_prerequisites(state, token.user.is_site_admin)?;
    let private = call.params.text("privatetoken")?.unwrap_or("");
    if private.is_empty() || call.params.came_in_query("privatetoken") {
        return Err(MoodleError::invalid_private_token());
    }
    let user_id = token.user.id;
    let now = now();
    let since = now - Duration::minutes(AUTOLOGIN_MIN_MINUTES_BETWEEN);
    // The lockout is counted from the last key issued, kept in the database so every instance agrees.
    let recent = state
        .db
        .read(move |conn| crate::db::keys::latest_created(conn, user_id, AUTOLOGIN))
        .await?
        .is_some_and(|at| at > since);
    if recent {
        return Err(MoodleError::autologin_lockout(AUTOLOGIN_MIN_MINUTES_BETWEEN));
    }
    let matches = token
        .private_hash
        .as_deref()
        .is_some_and(|h| crate::domain::secret::SecretHash::from_stored(h.to_owned()).matches(private));
    if !matches {
        return Err(MoodleError::invalid_private_token());
    }
    let ip = call.client.ip;
    let actor = Actor { user_id: Some(user_id), ip: Some(ip.to_string()) };
    let registry = state.registry.clone();
    let issued = state
        .db
        .write(move |conn| {
            ops::revoke(
                conn,
                &registry,
                user_id,
                &Selection::OfType(AUTOLOGIN.into()),
                Scope::Everything,
                &actor,
                "replaced by a new auto-login key",
                now,
            )?;
            let request = KeyRequest {
                user_id,
                key_type: AUTOLOGIN.into(),
                name: "Mobile app auto-login".into(),
                ip_restriction: crate::domain::ip_restriction::IpRestriction::parse(&ip.to_string()).ok().flatten(),
                valid_until: Some(now + Duration::seconds(AUTOLOGIN_KEY_SECONDS)),
                secret: SecretKind::Token,
                ..Default::default()
            };
            ops::issue(conn, request, &actor, now)
        })
        .await?;
    let key = issued.secret.map(|s| s.expose().to_owned()).unwrap_or_default();
    Ok(json!({
        "key": key,
        "autologinurl": format!("{}/admin/tool/mobile/autologin.php", wwwroot(state)),
        "warnings": [],
    }))
}

#[derive(serde::Serialize)]
struct MyKey {
    id: i64,
    #[serde(rename = "type")]
    key_type: String,
    typename: String,
    name: String,
    service: String,
    timecreated: i64,
    validuntil: i64,
    lastaccess: i64,
    lastip: String,
    iprestriction: String,
    current: bool,
    agents: Vec<Value>,
}

/// The caller's own keys (visible types), so the app can show "your devices".
async fn my_keys(call: Call<'_>) -> Result<Value, MoodleError> {
    let (state, user_id, current) = (call.state, call.token.user.id, call.token.key_id);
    state.usage.settle(&state.db).await?;
    let now = now();
    let (keys, usage) = state
        .db
        .read(move |conn| {
            let keys = crate::db::keys::active_for_user(conn, user_id, now)?;
            let ids: Vec<i64> = keys.iter().map(|k| k.id).collect();
            Ok((keys, crate::db::usage::summary_for_keys(conn, &ids)?))
        })
        .await?;
    let mut usage = crate::usage::summarise(&usage);
    let list: Vec<MyKey> = keys
        .into_iter()
        .filter_map(|k| {
            let t = state.registry.get(&k.key_type).filter(|t| t.visible)?;
            Some(MyKey {
                id: k.id,
                typename: t.label.clone(),
                service: if k.service_id == Some(call.token.service.service.id) { call.token.service.service.shortname.clone() } else { String::new() },
                timecreated: to_unix(k.created_at),
                validuntil: k.valid_until.map_or(0, to_unix),
                lastaccess: k.last_used_at.map_or(0, to_unix),
                lastip: k.last_used_ip.clone().unwrap_or_default(),
                iprestriction: k.ip_restriction.clone().unwrap_or_default(),
                current: k.id == current,
                agents: usage
                    .remove(&k.id)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|a| json!({"agent": a.agent, "lastseen": to_unix(a.last_seen), "ip": a.last_ip, "hits": a.hits}))
                    .collect(),
                key_type: k.key_type,
                name: k.name,
            })
        })
        .collect();
    Ok(json!({"keys": list, "warnings": []}))
}

async fn revoke_my_key(call: Call<'_>) -> Result<Value, MoodleError> {
    let key_id = call.params.required_int("keyid")?;
    let (state, user_id) = (call.state, call.token.user.id);
    let registry = state.registry.clone();
    let actor = Actor { user_id: Some(user_id), ip: Some(call.client.ip_string()) };
    let revocable = |t: &str| registry.get(t).is_some_and(|t| t.visible && t.revocable);
    let row = state.db.read(move |conn| crate::db::keys::find(conn, key_id)).await?;
    // Another person's key is reported exactly like a missing one.
    let Some(row) = row.filter(|r| r.user_id == user_id && r.revoked_at.is_none() && revocable(&r.key_type)) else {
        return Ok(
            json!({"revoked": false, "warnings": [{"item": "key", "itemid": key_id, "warningcode": "keynotfound", "message": "No such key of yours can be revoked."}]}),
        );
    };
    let registry = state.registry.clone();
    let count = state
        .db
        .write(move |conn| {
            ops::revoke(
                conn,
                &registry,
                user_id,
                &Selection::One(row.id),
                Scope::RevocableOnly,
                &actor,
                "revoked by its owner from the app",
                now(),
            )
        })
        .await?;
    Ok(json!({"revoked": count > 0, "warnings": []}))
}

//! /login/token.php: username, password and service in; `{"token", "privatetoken"}` out — one
//! token per device rather than Moodle's one per user and service.

use super::error::MoodleError;
use super::params::Params;
use super::server::read_params;
use crate::app::State;
use crate::domain::time::now;
use crate::keys::device_tokens::{issue_for_device, Device, TokenGrant};
use crate::keys::ops::Actor;
use crate::keys::WEBSERVICE_TOKEN;
use crate::web::client::ClientInfo;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::Duration;
use serde_json::json;

/// As Moodle's token.php: any origin may ask (the app's web build runs on another origin).
const ANY_ORIGIN: (actix_web::http::header::HeaderName, &str) =
    (actix_web::http::header::ACCESS_CONTROL_ALLOW_ORIGIN, "*");

/// login/token.php's error object (Moodle's AJAX fatal error), with HTTP 200 as clients expect.
pub fn error_response(error: &MoodleError, debug: bool) -> HttpResponse {
    let debuginfo = error.debuginfo.as_deref().filter(|_| debug);
    HttpResponse::Ok().content_type("application/json").insert_header(ANY_ORIGIN).json(json!({
        "error": error.message,
        "errorcode": error.errorcode,
        "stacktrace": null,
        "debuginfo": debuginfo,
        "reproductionlink": null,
    }))
}

pub async fn token(state: State, req: HttpRequest, payload: web::Payload) -> HttpResponse {
    let client = ClientInfo::of(&req);
    let result = match read_params(&req, payload).await {
        Ok(params) => issue(&state, &params, &client).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(body) => HttpResponse::Ok().content_type("application/json").insert_header(ANY_ORIGIN).json(body),
        Err(e) => error_response(&e, state.config.debug),
    }
}

/// Optional device details a client may send with its login (the app's own are its user agent).
pub fn device_from(params: &Params, client: &ClientInfo) -> Result<Device, MoodleError> {
    let field = |name: &str| -> Result<Option<String>, MoodleError> {
        Ok(params.text(name)?.map(|v| v.trim().chars().take(200).collect::<String>()).filter(|v| !v.is_empty()))
    };
    Ok(Device {
        device_id: field("deviceid")?,
        name: field("devicename")?,
        model: field("devicemodel")?,
        platform: field("deviceplatform")?,
        os_version: field("deviceversion")?,
        app_version: field("appversion")?,
        user_agent: client.user_agent.chars().take(512).collect(),
    })
}

async fn issue(state: &State, params: &Params, client: &ClientInfo) -> Result<serde_json::Value, MoodleError> {
    if params.text("appsitecheck")? == Some("1") {
        return Ok(json!({"appsitecheck": "ok"}));
    }
    let username = params.text("username")?.ok_or_else(|| MoodleError::missing_param("username"))?;
    let password = params.text("password")?.ok_or_else(|| MoodleError::missing_param("password"))?;
    let service = params.text("service")?.ok_or_else(|| MoodleError::missing_param("service"))?.trim().to_owned();
    let device = device_from(params, client)?;

    let login = username.trim().to_lowercase();
    let ip = client.ip_string();
    let (user, throttled) = state
        .db
        .read(move |conn| {
            let user = crate::accounts::find_by_login_name(conn, &login)?;
            let throttled = crate::accounts::sign_in_throttled(conn, user.as_ref().map(|u| u.id), &ip)?;
            Ok((user, throttled))
        })
        .await?;
    // Throttled attempts fail as Moodle's locked-out accounts do, without checking the password.
    let password_ok = !throttled && state.passwords.matches(user.as_ref(), password).await;
    // A suspended account fails like a wrong password, as in Moodle's token.php.
    let user = match user {
        Some(u) if password_ok && !u.suspended => u,
        other => {
            let reason = crate::accounts::sign_in_failure(other.as_ref(), password_ok, throttled);
            crate::accounts::record_sign_in_failure(&state.db, true, other.map(|u| u.id), client.ip_string(), reason)
                .await?;
            return Err(MoodleError::invalid_login());
        }
    };
    let (token, private) = token_for_service(state, &user, &service, &device, client).await?;
    // Moodle returns the private token only over HTTPS and never to site admins.
    let private = private.filter(|_| state.config.served_over_https() && !user.is_site_admin);
    Ok(json!({"token": token, "privatetoken": private}))
}

/// A new token of a device for a service, for a user who has just proved who they are: the
/// service must exist and be enabled, and web-service tokens must be switched on.
pub async fn token_for_service(
    state: &State,
    user: &crate::db::models::User,
    service: &str,
    device: &Device,
    client: &ClientInfo,
) -> Result<(String, Option<String>), MoodleError> {
    let shortname = service.to_owned();
    let found = state.db.read(move |conn| crate::db::services::find_by_shortname(conn, &shortname)).await?;
    let service = found.filter(|s| s.enabled).ok_or_else(MoodleError::service_not_available)?;
    let type_default = state.registry.on_by_default(WEBSERVICE_TOKEN);
    let type_enabled =
        state.db.read(move |conn| crate::db::key_types::enabled(conn, WEBSERVICE_TOKEN, type_default)).await?;
    if !type_enabled {
        return Err(MoodleError::cannot_create_token(&service.shortname));
    }
    grant_device_token(state, user, service.id, device, client).await
}

/// Issues (replacing) the device's token for a service; returns the token and private token.
pub async fn grant_device_token(
    state: &State,
    user: &crate::db::models::User,
    service_id: i64,
    device: &Device,
    client: &ClientInfo,
) -> Result<(String, Option<String>), MoodleError> {
    let registry = state.registry.clone();
    let actor = Actor { user_id: Some(user.id), ip: Some(client.ip_string()) };
    let grant_device = device.clone();
    let (user_id, days) = (user.id, state.config.token_days);
    let issued = state
        .db
        .write(move |conn| {
            let grant = TokenGrant { user_id, service_id, device: &grant_device, valid_for: Duration::days(days) };
            issue_for_device(conn, &registry, &grant, &actor, now())
        })
        .await?;
    let token = issued.secret.map(|s| s.expose().to_owned()).ok_or_else(|| MoodleError::invalid_token())?;
    Ok((token, issued.private_token.map(|p| p.expose().to_owned())))
}

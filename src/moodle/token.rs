//! /login/token.php: username, password and service in; `{"token", "privatetoken"}` out — one
//! token per device rather than Moodle's one per user and service.

use super::error::MoodleError;
use super::output::{self, Shape};
use super::params::{read_params, Params};
use super::State;
use crate::core::{Channel, Client, Device, KeyOwner};
use crate::http::client_of;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

/// As Moodle's token.php: any origin may ask (the app's web build runs on another origin).
const ANY_ORIGIN: (actix_web::http::header::HeaderName, &str) =
    (actix_web::http::header::ACCESS_CONTROL_ALLOW_ORIGIN, "*");

pub async fn token(state: State, req: HttpRequest, payload: web::Payload) -> HttpResponse {
    let client = client_of(&req);
    let result = match read_params(&req, payload).await {
        Ok(params) => issue(&state, &params, &client).await,
        Err(e) => Err(e),
    };
    // Errors too answer HTTP 200, as Moodle's do; clients read `errorcode`.
    let body = match result {
        Ok(body) => body,
        Err(e) => output::exception(&e, Shape::TokenPhp, state.core.config().debug),
    };
    HttpResponse::Ok()
        .content_type("application/json")
        .insert_header(ANY_ORIGIN)
        // A token is in the body: no cache may keep it.
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
        .json(body)
}

/// Optional device details a client may send with its login (the app's own are its user agent).
pub fn device_from(params: &Params, client: &Client) -> Result<Device, MoodleError> {
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

async fn issue(state: &State, params: &Params, client: &Client) -> Result<serde_json::Value, MoodleError> {
    if params.text("appsitecheck")? == Some("1") {
        return Ok(json!({"appsitecheck": "ok"}));
    }
    let username = params.text("username")?.ok_or_else(|| MoodleError::missing_param("username"))?;
    let password = params.text("password")?.ok_or_else(|| MoodleError::missing_param("password"))?;
    let service = params.text("service")?.ok_or_else(|| MoodleError::missing_param("service"))?;
    let device = device_from(params, client)?;
    // Throttled, wrong and suspended alike answer "invalid login", as Moodle's token.php does.
    let user = state.core.sign_in(username, password, Channel::WebService, client).await?;
    let granted = state.core.grant_token(&KeyOwner::of(&user), service, &device, client).await?;
    Ok(json!({"token": granted.token, "privatetoken": granted.private_token}))
}

//! tool_mobile_get_tokens_for_qr_login: the app scans a QR code from the keys page and trades
//! its single-use key for a token of its own.

use super::error::MoodleError;
use super::functions::OpenCall;
use super::mobile::{check_autologin_prerequisites, is_moodle_app};
use super::private_keys::{validate, Consume};
use super::token::{device_from, grant_device_token};
use crate::keys::QR_LOGIN;
use crate::setup::MOBILE_SERVICE;
use serde_json::{json, Value};

pub async fn tokens_for_qr_login(call: OpenCall<'_>) -> Result<Value, MoodleError> {
    let (state, params, client) = (call.state, &call.params, call.client);
    let qrloginkey = params.required_text("qrloginkey")?.to_owned();
    let userid = params.required_int("userid")?;
    if !is_moodle_app(&client.user_agent) {
        return Err(MoodleError::app_required());
    }
    let (_, user) = validate(state, &qrloginkey, QR_LOGIN, Some(userid), client, Consume::Once).await?;
    check_autologin_prerequisites(&state.config, user.is_site_admin)?;
    let service = state
        .db
        .read(|conn| crate::db::services::find_by_shortname(conn, MOBILE_SERVICE))
        .await?
        .filter(|s| s.enabled)
        .ok_or_else(MoodleError::service_not_available)?;
    let device = device_from(params, client)?;
    let (token, private) = grant_device_token(state, &user, service.id, &device, client).await?;
    Ok(json!({"token": token, "privatetoken": private.unwrap_or_default(), "warnings": []}))
}

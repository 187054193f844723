//! tool_mobile_get_tokens_for_qr_login: the app scans a QR code from the keys page and trades
//! its single-use key for a token of its own.

use super::call::OpenCall;
use super::error::MoodleError;
use super::mobile::is_moodle_app;
use super::token::device_from;
use serde_json::{json, Value};

pub async fn tokens_for_qr_login(call: OpenCall<'_>) -> Result<Value, MoodleError> {
    let (state, params, client) = (call.state, &call.params, call.client);
    let qrloginkey = params.required_text("qrloginkey")?.to_owned();
    let userid = params.required_int("userid")?;
    if !is_moodle_app(&client.user_agent) {
        return Err(MoodleError::app_required());
    }
    let device = device_from(params, client)?;
    let granted = state.core.qr_login(&qrloginkey, userid, &device, client).await?;
    Ok(json!({"token": granted.token, "privatetoken": granted.private_token.unwrap_or_default(), "warnings": []}))
}

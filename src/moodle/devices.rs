//! The app's device registrations (Moodle's user_devices): a phone registers for push
//! notifications with its uuid, and from then on its token knows which device it is on.

use super::call::Call;
use super::error::MoodleError;
use super::params::Params;
use crate::core::DeviceRegistration;
use serde_json::{json, Value};

fn text_param(params: &Params, name: &str, max: usize) -> Result<String, MoodleError> {
    Ok(params.required_text(name)?.trim().chars().take(max).collect())
}

/// core_user_add_user_device.
pub async fn add_user_device(call: Call<'_>) -> Result<Value, MoodleError> {
    let p = &call.params;
    let device = DeviceRegistration {
        appid: text_param(p, "appid", 100)?,
        name: text_param(p, "name", 100)?,
        model: text_param(p, "model", 100)?,
        platform: text_param(p, "platform", 100)?,
        version: text_param(p, "version", 100)?,
        pushid: text_param(p, "pushid", 1000)?,
        uuid: text_param(p, "uuid", 255)?,
        publickey: p.text("publickey")?.map(|k| k.chars().take(4096).collect::<String>()),
    };
    let pushid = device.pushid.clone();
    let duplicate = call.state.core.register_device(call.token.key(), device, call.client).await?;
    if duplicate {
        return Ok(json!([[{
            "item": pushid, "warningcode": "existingkeyforthisuser", "message": "This key is already stored for this user",
        }]]));
    }
    Ok(json!([]))
}

/// core_user_update_user_device_public_key: the app's key for encrypted push notifications.
pub async fn update_public_key(call: Call<'_>) -> Result<Value, MoodleError> {
    let uuid = text_param(&call.params, "uuid", 255)?;
    let appid = text_param(&call.params, "appid", 100)?;
    let publickey: String = call.params.required_text("publickey")?.chars().take(4096).collect();
    let updated = call.state.core.update_device_public_key(call.token.user().id, &uuid, &appid, publickey).await?;
    let warnings = if updated { json!([]) } else { device_missing(&uuid) };
    Ok(json!({"status": updated, "warnings": warnings}))
}

/// core_user_remove_user_device: the app forgets the site on this phone.
pub async fn remove_user_device(call: Call<'_>) -> Result<Value, MoodleError> {
    let uuid = text_param(&call.params, "uuid", 255)?;
    let appid = call.params.text("appid")?.unwrap_or("").trim().to_owned();
    let removed = call.state.core.remove_device(call.token.user().id, &uuid, &appid, call.client).await?;
    let warnings = if removed == 0 { device_missing(&uuid) } else { json!([]) };
    Ok(json!({"removed": removed > 0, "warnings": warnings}))
}

fn device_missing(uuid: &str) -> Value {
    json!([{"item": uuid, "warningcode": "devicedoesnotexist", "message": "The device doesn't exists in the database"}])
}

//! tool_userkeys_force_logout, tool_userkeys_get_user_keys and tool_userkeys_revoke_keys: an
//! administrator's script ends a person's access, audits their keys and revokes keys by id,
//! with a token of the `tool_userkeys_admin` service. The token's owner needs the capability;
//! the core checks it, and records the token as the actor.

use super::call::Call;
use super::error::MoodleError;
use super::params::Params;
use crate::core::{CoreError, TokenActor};
use crate::domain::time::to_unix;
use serde_json::{json, Value};

pub const FORCE_LOGOUT: &str = "tool_userkeys_force_logout";
pub const GET_USER_KEYS: &str = "tool_userkeys_get_user_keys";
pub const REVOKE_KEYS: &str = "tool_userkeys_revoke_keys";

fn actor(call: &Call<'_>) -> TokenActor {
    TokenActor { user_id: call.token.user().id, key_id: call.token.key_id }
}

/// The core's refusals in Moodle's words: acting above one's station is Moodle's
/// `nopermissions`, as a missing capability is.
fn refused(e: CoreError) -> MoodleError {
    match e {
        CoreError::NotAllowed(m) => MoodleError::no_permissions("act on this person's keys", &m),
        CoreError::NotFound => MoodleError::invalid_parameter("userid => There is no such user."),
        other => other.into(),
    }
}

/// A positive id, as Moodle's PARAM_INT with a value that names a record.
fn id(params: &Params, name: &str) -> Result<i64, MoodleError> {
    let value = params.required_int(name)?;
    if value <= 0 {
        return Err(MoodleError::invalid_parameter(format!("{name} => Invalid parameter value detected: {value}")));
    }
    Ok(value)
}

/// Moodle's PARAM_BOOL: 0/1 or true/false; absent is `default`.
fn boolean(params: &Params, name: &str, default: bool) -> Result<bool, MoodleError> {
    match params.text(name)?.map(|v| v.trim().to_ascii_lowercase()) {
        None => Ok(default),
        Some(v) if v == "1" || v == "true" => Ok(true),
        Some(v) if v == "0" || v == "false" || v.is_empty() => Ok(false),
        Some(v) => Err(MoodleError::invalid_parameter(format!(
            "{name} => Invalid parameter value detected: Invalid external api parameter: the value is \"{}\", the server was expecting \"bool\" type",
            v.chars().take(100).collect::<String>()
        ))),
    }
}

pub async fn force_logout(call: Call<'_>) -> Result<Value, MoodleError> {
    let user_id = id(&call.params, "userid")?;
    let suspend = boolean(&call.params, "suspend", false)?;
    let reason = call.params.text("reason")?.unwrap_or("").to_owned();
    let revoked = call
        .state
        .core
        .force_logout_by_token(actor(&call), user_id, suspend, &reason, call.client)
        .await
        .map_err(refused)?;
    Ok(json!({"userid": user_id, "revoked": revoked, "suspended": suspend, "warnings": []}))
}

pub async fn get_user_keys(call: Call<'_>) -> Result<Value, MoodleError> {
    let user_id = id(&call.params, "userid")?;
    let person = call.state.core.user_keys_by_token(actor(&call), user_id).await.map_err(refused)?;
    let keys: Vec<Value> = person
        .entries
        .into_iter()
        .map(|k| {
            json!({
                "id": k.id,
                "type": k.key_type,
                "typename": k.type_label,
                "name": k.name,
                "service": k.service.unwrap_or_default(),
                "functions": k.function_scope.unwrap_or_default(),
                "timecreated": to_unix(k.created_at),
                "validuntil": k.valid_until.map_or(0, to_unix),
                "lastaccess": k.last_used_at.map_or(0, to_unix),
                "lastip": k.last_used_ip.unwrap_or_default(),
                "iprestriction": k.ip_restriction.unwrap_or_default(),
                "state": k.state.as_str(),
                "timerevoked": k.revoked_at.map_or(0, to_unix),
            })
        })
        .collect();
    Ok(json!({"userid": user_id, "username": person.user.username, "keys": keys, "warnings": []}))
}

pub async fn revoke_keys(call: Call<'_>) -> Result<Value, MoodleError> {
    let ids = call.params.int_list("keyids")?;
    if let Some(bad) = ids.iter().find(|i| **i <= 0) {
        return Err(MoodleError::invalid_parameter(format!("keyids => Invalid parameter value detected: {bad}")));
    }
    let reason = call.params.text("reason")?.unwrap_or("").to_owned();
    let revoked =
        call.state.core.revoke_keys_by_token(actor(&call), ids, &reason, call.client).await.map_err(refused)?;
    Ok(json!({"revoked": revoked, "warnings": []}))
}

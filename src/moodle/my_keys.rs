//! local_userkeys_get_my_keys and local_userkeys_revoke_my_key: the app shows a person their
//! keys ("your devices") and revokes one, as the keys page does.

use super::call::Call;
use super::error::MoodleError;
use crate::core::{CoreError, OwnRevocation};
use crate::domain::time::to_unix;
use serde_json::{json, Value};

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

/// Every key of the app's own service and every other visible key of the caller.
const ALL_OF_EACH_TYPE: i64 = 10_000;

/// The caller's own keys (visible types), so the app can show "your devices".
pub async fn list(call: Call<'_>) -> Result<Value, MoodleError> {
    let own = call.state.core.own_keys(call.token.user().id, ALL_OF_EACH_TYPE, None).await?;
    let this_service = &call.token.service().service;
    let list: Vec<MyKey> = own
        .entries
        .into_iter()
        .map(|k| MyKey {
            id: k.id,
            typename: k.type_label,
            service: if k.service_id == Some(this_service.id) { this_service.shortname.clone() } else { String::new() },
            timecreated: to_unix(k.created_at),
            validuntil: k.valid_until.map_or(0, to_unix),
            lastaccess: k.last_used_at.map_or(0, to_unix),
            lastip: k.last_used_ip.unwrap_or_default(),
            iprestriction: k.ip_restriction.unwrap_or_default(),
            current: k.id == call.token.key_id,
            agents: k
                .agents
                .into_iter()
                .map(|a| json!({"agent": a.agent, "lastseen": to_unix(a.last_seen), "ip": a.last_ip, "hits": a.hits}))
                .collect(),
            key_type: k.key_type,
            name: k.name,
        })
        .collect();
    Ok(json!({"keys": list, "warnings": []}))
}

pub async fn revoke(call: Call<'_>) -> Result<Value, MoodleError> {
    let key_id = call.params.required_int("keyid")?;
    let request = OwnRevocation::One(key_id);
    match call.state.core.revoke_own(call.token.user().id, None, &request, true, call.client).await {
        Ok(count) => Ok(json!({"revoked": count > 0, "warnings": []})),
        // Another person's key is reported exactly like a missing one.
        Err(CoreError::NotFound | CoreError::NotAllowed(_)) => Ok(json!({"revoked": false, "warnings": [{
            "item": "key", "itemid": key_id, "warningcode": "keynotfound",
            "message": "No such key of yours can be revoked.",
        }]})),
        Err(e) => Err(e.into()),
    }
}

//! The app's own view of a person's keys: list them (so it can show "your devices") and
//! revoke one.

use super::error::MoodleError;
use super::functions::Call;
use crate::db::keys::Selection;
use crate::domain::time::{now, to_unix};
use crate::keys::ops::{self, Actor, Scope};
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

/// The caller's own keys (visible types), so the app can show "your devices".
pub async fn list(call: Call<'_>) -> Result<Value, MoodleError> {
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

pub async fn revoke(call: Call<'_>) -> Result<Value, MoodleError> {
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

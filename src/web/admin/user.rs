//! One person's whole key set (hidden types too) with their usage, and force logout.

use super::keys::{key_state, load_switches};
use super::{field, form_pairs, AdminSession};
use crate::app::State;
use crate::domain::capability::Capability;
use crate::domain::time::{exact, now, relative};
use crate::error::AppError;
use crate::keys::ops::{self, Actor};
use crate::web::client::ClientInfo;
use crate::web::templates::render;
use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
pub struct UserQuery {
    id: Option<String>,
    done: Option<String>,
}

fn user_id(raw: Option<&str>) -> Result<i64, AppError> {
    raw.and_then(|r| r.trim().parse().ok()).ok_or_else(|| AppError::BadRequest("Choose a user.".into()))
}

async fn load_user(state: &State, id: i64) -> Result<crate::db::models::User, AppError> {
    state.db.read(move |conn| crate::db::users::find(conn, id)).await?.ok_or(AppError::NotFound)
}

#[derive(Serialize)]
struct KeyLine {
    id: i64,
    type_label: String,
    hidden: bool,
    name: String,
    service: String,
    state: &'static str,
    disabled: bool,
    created: String,
    created_exact: String,
    expires: String,
    ip_restriction: String,
    last_used: String,
    last_ip: String,
    revoked_reason: String,
    agents: Vec<AgentLine>,
}

#[derive(Serialize)]
struct AgentLine {
    agent: String,
    when: String,
    when_exact: String,
    ip: String,
    hits: i64,
}

pub async fn page(state: State, admin: AdminSession, query: web::Query<UserQuery>) -> Result<HttpResponse, AppError> {
    admin.require(Capability::ViewAllKeys)?;
    let id = user_id(query.id.as_deref())?;
    let user = load_user(&state, id).await?;
    state.usage.settle(&state.db).await?;
    let now = now();
    let (keys, usage) = state
        .db
        .read(move |conn| {
            // Every key of the person, newest first; revoked ones stay visible for the record.
            let filter = crate::db::key_search::KeyFilter { user_id: Some(id), ..Default::default() };
            let keys = crate::db::key_search::search(
                conn,
                &filter,
                crate::db::key_search::KeySort::CreatedDesc,
                now,
                0,
                1000,
            )?;
            let ids: Vec<i64> = keys.iter().map(|k| k.key.id).collect();
            Ok((keys, crate::db::usage::summary_for_keys(conn, &ids)?))
        })
        .await?;
    let switches = load_switches(&state).await?;
    let mut usage = crate::usage::summarise(&usage);
    let lines: Vec<KeyLine> = keys
        .into_iter()
        .map(|listed| {
            let k = listed.key;
            let key_type = state.registry.get(&k.key_type);
            KeyLine {
                id: k.id,
                type_label: key_type.map_or(k.key_type.clone(), |t| t.label.clone()),
                hidden: key_type.is_some_and(|t| !t.visible),
                name: k.name.clone(),
                service: switches.service_name(&k).unwrap_or_default().to_owned(),
                state: key_state(&k, now),
                disabled: switches.key_disabled(&state.registry, &k),
                created: relative(k.created_at, now),
                created_exact: exact(k.created_at),
                expires: k.valid_until.map_or("Never".into(), |v| relative(v, now)),
                ip_restriction: k.ip_restriction.clone().unwrap_or_default(),
                last_used: k.last_used_at.map_or("Never".into(), |v| relative(v, now)),
                last_ip: k.last_used_ip.clone().unwrap_or_default(),
                revoked_reason: k.revoked_reason.clone().unwrap_or_default(),
                agents: usage
                    .remove(&k.id)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|a| AgentLine {
                        when: relative(a.last_seen, now),
                        when_exact: exact(a.last_seen),
                        agent: a.agent,
                        ip: a.last_ip,
                        hits: a.hits,
                    })
                    .collect(),
            }
        })
        .collect();
    let mut ctx = admin.context(&state);
    ctx.insert("target", &serde_json::json!({"id": user.id, "username": user.username, "fullname": user.fullname, "email": user.email, "suspended": user.suspended}));
    ctx.insert("keys", &lines);
    ctx.insert("done", &query.done);
    ctx.insert("can_revoke", &admin.can(Capability::RevokeAnyKey));
    ctx.insert("can_end", &admin.can(Capability::EndSessions));
    ctx.insert("can_issue", &admin.can(Capability::IssueTokens));
    render(&state.templates, "admin_user.html", &ctx)
}

pub async fn confirm_force_logout(
    state: State,
    admin: AdminSession,
    query: web::Query<UserQuery>,
) -> Result<HttpResponse, AppError> {
    admin.require(Capability::EndSessions)?;
    let user = load_user(&state, user_id(query.id.as_deref())?).await?;
    let mut ctx = admin.context(&state);
    ctx.insert("target", &serde_json::json!({"id": user.id, "username": user.username, "fullname": user.fullname}));
    ctx.insert("error", &Option::<String>::None);
    render(&state.templates, "admin_forcelogout.html", &ctx)
}

pub async fn force_logout(
    state: State,
    admin: AdminSession,
    client: ClientInfo,
    body: web::Bytes,
) -> Result<HttpResponse, AppError> {
    admin.require(Capability::EndSessions)?;
    let pairs = form_pairs(&body);
    admin.session.check_sesskey(field(&pairs, "sesskey"))?;
    let user = load_user(&state, user_id(field(&pairs, "id"))?).await?;
    let reason: String = field(&pairs, "reason").unwrap_or("").trim().chars().take(500).collect();
    if reason.is_empty() {
        let mut ctx = admin.context(&state);
        ctx.insert("target", &serde_json::json!({"id": user.id, "username": user.username, "fullname": user.fullname}));
        ctx.insert("error", "Give a reason: it goes into the audit trail.");
        let mut response = render(&state.templates, "admin_forcelogout.html", &ctx)?;
        *response.status_mut() = actix_web::http::StatusCode::BAD_REQUEST;
        return Ok(response);
    }
    let suspend = field(&pairs, "suspend") == Some("1");
    let registry = state.registry.clone();
    let actor = Actor { user_id: Some(admin.session.user.id), ip: Some(client.ip_string()) };
    let target = user.id;
    let count =
        state.db.write(move |conn| ops::force_logout(conn, &registry, target, suspend, &actor, &reason, now())).await?;
    Ok(crate::web::login::redirect(&format!("/admin/userkeys/user.php?id={target}&done=logout-{count}")))
}

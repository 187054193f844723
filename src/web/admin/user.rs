//! One person's whole key set (hidden types too) with their usage, and force logout.

use super::{field, AdminSession};
use crate::core::{Capability, Client};
use crate::web::error::AppError;
use crate::web::templates::render;
use crate::web::{flash, wording, State};
use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
pub struct UserQuery {
    id: Option<String>,
}

fn user_id(raw: Option<&str>) -> Result<i64, AppError> {
    raw.and_then(|r| r.trim().parse().ok()).ok_or_else(|| AppError::BadRequest("Choose a user.".into()))
}

async fn load_user(state: &State, id: i64) -> Result<crate::core::User, AppError> {
    Ok(state.core.user(id).await?)
}

#[derive(Serialize)]
struct KeyLine {
    id: i64,
    type_label: String,
    hidden: bool,
    name: String,
    /// For labels: "Pixel 8 (Web-service token)".
    label: String,
    service: String,
    state: &'static str,
    disabled: bool,
    created: String,
    created_exact: String,
    expires: String,
    expires_exact: String,
    ip_restriction: String,
    last_used: String,
    last_ip: String,
    revoked_reason: String,
    agents: Vec<AgentLine>,
    uses_30_days: i64,
    /// Uses per day over the last 30 days, as a small SVG chart.
    chart: String,
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
    let id = user_id(query.id.as_deref())?;
    user_page(&state, &admin, id, None).await
}

/// One person's keys; `error` (answered 400) is shown beside the Revoke button.
pub async fn user_page(
    state: &State,
    admin: &AdminSession,
    id: i64,
    error: Option<String>,
) -> Result<HttpResponse, AppError> {
    admin.require(Capability::ViewAllKeys)?;
    let person = state.core.person_keys(id).await?;
    let user = person.user;
    let clock = &admin.clock;
    let lines: Vec<KeyLine> = person
        .entries
        .into_iter()
        .map(|k| {
            let (expires, expires_exact) = wording::ending(&k, clock);
            let service = wording::service_and_scope(&k);
            KeyLine {
                id: k.id,
                label: wording::key_label(&k),
                type_label: k.type_label,
                hidden: !k.type_visible,
                name: k.name,
                service,
                state: k.state.as_str(),
                disabled: k.disabled,
                created: clock.relative(k.created_at),
                created_exact: clock.exact(k.created_at),
                expires,
                expires_exact,
                ip_restriction: k.ip_restriction.unwrap_or_default(),
                last_used: k.last_used_at.map_or("Never".into(), |v| clock.relative(v)),
                uses_30_days: k.daily_uses.iter().sum(),
                chart: crate::web::chart::daily_uses_svg(&k.daily_uses, clock.now.date()),
                last_ip: k.last_used_ip.unwrap_or_default(),
                revoked_reason: k.revoked_reason.unwrap_or_default(),
                agents: k
                    .agents
                    .into_iter()
                    .map(|a| AgentLine {
                        when: clock.relative(a.last_seen),
                        when_exact: clock.exact(a.last_seen),
                        agent: a.agent,
                        ip: a.last_ip,
                        hits: a.hits,
                    })
                    .collect(),
            }
        })
        .collect();
    let mut ctx = admin.context(state);
    ctx.insert("nav", "keys");
    ctx.insert("target", &serde_json::json!({"id": user.id, "username": user.username, "fullname": user.fullname, "email": user.email, "suspended": user.suspended}));
    ctx.insert("any_active", &lines.iter().any(|k| k.state == "active"));
    ctx.insert("keys", &lines);
    ctx.insert("bulk_error", &error);
    ctx.insert("can_revoke", &admin.can(Capability::RevokeAnyKey));
    ctx.insert("can_end", &admin.can(Capability::EndSessions));
    ctx.insert("can_issue", &admin.can(Capability::IssueTokens));
    let mut response = admin.page(state, "admin_user.html", &ctx)?;
    if error.is_some() {
        *response.status_mut() = actix_web::http::StatusCode::BAD_REQUEST;
    }
    Ok(response)
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
    client: Client,
    body: web::Bytes,
) -> Result<HttpResponse, AppError> {
    let pairs = admin.posted_form(Capability::EndSessions, &body)?;
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
    let target = user.id;
    let count = state.core.force_logout(admin.session.user.id, target, suspend, reason, &client).await?;
    let message = format!(
        "{} was signed out everywhere: {count} {} revoked{}.",
        user.username,
        if count == 1 { "key" } else { "keys" },
        if suspend { ", and the account is suspended" } else { "" }
    );
    flash::redirect_with(&state, &format!("/admin/userkeys/user.php?id={target}"), &message)
}

/// Suspends an account or lifts its suspension (`suspend=0`), audited.
pub async fn suspend(
    state: State,
    admin: AdminSession,
    client: Client,
    body: web::Bytes,
) -> Result<HttpResponse, AppError> {
    let pairs = admin.posted_form(Capability::EndSessions, &body)?;
    let target = user_id(field(&pairs, "id"))?;
    let suspend = match field(&pairs, "suspend") {
        Some("1") => true,
        Some("0") => false,
        _ => return Err(AppError::BadRequest("Say whether to suspend or to lift the suspension.".into())),
    };
    let user = load_user(&state, target).await?;
    state.core.set_suspended(Some(admin.session.user.id), target, suspend, Some(&client)).await?;
    let message = if suspend {
        format!("{} is suspended: they cannot sign in until the suspension is lifted.", user.username)
    } else {
        format!("{} can sign in again. Their keys stay revoked; they sign in anew.", user.username)
    };
    flash::redirect_with(&state, &format!("/admin/userkeys/user.php?id={target}"), &message)
}

/// A help desk makes a password reset link for someone, shown once (to pass on by phone or in
/// person); it works once, for half an hour.
pub async fn reset_link(
    state: State,
    admin: AdminSession,
    client: Client,
    body: web::Bytes,
) -> Result<HttpResponse, AppError> {
    let pairs = admin.posted_form(Capability::EndSessions, &body)?;
    let target = load_user(&state, user_id(field(&pairs, "id"))?).await?;
    let link = state.core.issue_reset_link(admin.session.user.id, target.id, &client).await?;
    let mut ctx = admin.context(&state);
    ctx.insert("label", "password reset link");
    ctx.insert("heading", &format!("Password reset link for {}", target.username));
    ctx.insert("what", "Give this link to the person; it opens a page where they choose a new password");
    ctx.insert("value", &link);
    ctx.insert("qr_svg", &Option::<String>::None);
    let expires =
        crate::domain::time::now() + chrono::Duration::minutes(crate::keys::types::password_reset::LIFETIME_MINUTES);
    ctx.insert("expires", &Some(admin.clock.exact(expires)));
    ctx.insert("back_url", &format!("/admin/userkeys/user.php?id={}", target.id));
    ctx.insert("back_label", &format!("Back to {}'s keys", target.username));
    render(&state.templates, "newkey.html", &ctx)
}

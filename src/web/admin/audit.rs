//! The audit trail: who issued or revoked what, when and from where. The application only
//! ever appends to it.

use super::{page_number, AdminSession};
use crate::core::{AuditFilter, Capability};
use crate::domain::time::exact;
use crate::web::error::AppError;
use crate::web::templates::render;
use crate::web::State;
use actix_web::{web, HttpResponse};
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

const PAGE_SIZE: i64 = 100;

#[derive(Deserialize, Serialize, Default, Clone)]
pub struct AuditQuery {
    #[serde(default)]
    action: String,
    #[serde(default)]
    user: String,
    #[serde(default)]
    key: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    #[serde(default)]
    page: Option<String>,
}

fn date(raw: &str, what: &str) -> Result<Option<chrono::NaiveDateTime>, AppError> {
    if raw.trim().is_empty() {
        return Ok(None);
    }
    NaiveDate::parse_from_str(raw.trim(), "%Y-%m-%d")
        .map(|d| d.and_hms_opt(0, 0, 0))
        .map_err(|_| AppError::BadRequest(format!("{what} must be a date like 2026-11-23.")))
}

pub async fn page(state: State, admin: AdminSession, query: web::Query<AuditQuery>) -> Result<HttpResponse, AppError> {
    admin.require(Capability::ViewAudit)?;
    let q = query.into_inner();
    let filter = AuditFilter {
        action: Some(q.action.trim().to_owned()).filter(|a| !a.is_empty()),
        user: Some(q.user.clone()).filter(|u| !u.trim().is_empty()),
        key_id: if q.key.trim().is_empty() {
            None
        } else {
            Some(q.key.trim().parse().map_err(|_| AppError::BadRequest("Key must be a key id (a number).".into()))?)
        },
        since: date(&q.from, "From")?,
        // The day after "to", unless that is past the last day chrono can count.
        until: match date(&q.to, "To")? {
            Some(d) => Some(
                d.checked_add_signed(chrono::Duration::days(1))
                    .ok_or_else(|| AppError::BadRequest("To must be a date like 2026-11-23.".into()))?,
            ),
            None => None,
        },
    };
    let page = page_number(q.page.as_deref());
    let found = state.core.audit(filter, page, PAGE_SIZE).await?;
    let rows: Vec<serde_json::Value> = found
        .entries
        .iter()
        .map(|(e, actor, target)| serde_json::json!({
            "at": exact(e.at), "action": e.action, "action_words": action_words(&e.action), "actor": actor, "target": target,
            "key_type_label": e.key_type.as_deref().map(|t| state.core.registry().get(t).map_or(t.to_owned(), |k| k.label.clone())),
            "target_id": e.target_user_id, "key_id": e.key_id, "key_type": e.key_type, "ip": e.ip, "reason": e.reason,
        }))
        .collect();
    let more = found.more;
    let link = |p: i64| {
        let mut next = q.clone();
        next.page = Some(p.to_string());
        format!("/admin/userkeys/audit.php?{}", serde_urlencoded::to_string(&next).unwrap_or_default())
    };
    let mut ctx = admin.context(&state);
    ctx.insert("rows", &rows);
    ctx.insert("q", &q);
    ctx.insert("next", &more.then(|| link(page + 1)));
    ctx.insert("prev", &(page > 1).then(|| link(page - 1)));
    render(&state.templates, "admin_audit.html", &ctx)
}

/// What an audit entry's action means, in words.
fn action_words(action: &str) -> String {
    match action {
        "key_issued" => "Key issued",
        "key_revoked" => "Key revoked",
        "force_logout" => "Signed out everywhere by an administrator",
        "force_logout_and_suspend" => "Signed out everywhere and suspended",
        "sign_in_failed" => "Failed sign-in",
        "token_login_failed" => "Failed app sign-in",
        "password_changed" => "Password changed",
        "suspended" => "Account suspended",
        "unsuspended" => "Suspension lifted",
        "service_enabled" => "Service enabled",
        "service_disabled" => "Service disabled",
        "key_type_enabled" => "Key type enabled",
        "key_type_disabled" => "Key type disabled",
        other => return other.replace('_', " "),
    }
    .to_owned()
}

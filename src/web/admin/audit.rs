//! The audit trail: who issued or revoked what, when and from where. The application only
//! ever appends to it.

use super::{page_number, AdminSession};
use crate::core::{AuditFilter, Capability};
use crate::db::models::AuditEntry;
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

/// What the filter form could not use: which field, and what to say beside it.
struct FilterError {
    field: &'static str,
    message: String,
}

fn date(raw: &str, what: &str, field: &'static str) -> Result<Option<chrono::NaiveDateTime>, FilterError> {
    if raw.trim().is_empty() {
        return Ok(None);
    }
    NaiveDate::parse_from_str(raw.trim(), "%Y-%m-%d")
        .map(|d| d.and_hms_opt(0, 0, 0))
        .map_err(|_| FilterError { field, message: format!("{what} must be a date like 2026-11-23.") })
}

impl AuditQuery {
    fn filter(&self) -> Result<AuditFilter, FilterError> {
        // An action not in the list (a plugin's, or from an old link) is filtered on as asked.
        let action = self.action.trim();
        Ok(AuditFilter {
            action: Some(action.to_owned()).filter(|a| !a.is_empty()),
            user: Some(self.user.clone()).filter(|u| !u.trim().is_empty()),
            key_id: if self.key.trim().is_empty() {
                None
            } else {
                Some(
                    self.key.trim().parse().map_err(|_| FilterError {
                        field: "a-key",
                        message: "Key must be a key id (a number).".into(),
                    })?,
                )
            },
            since: date(&self.from, "From", "a-from")?,
            // The day after "to", unless that is past the last day chrono can count.
            until: match date(&self.to, "To", "a-to")? {
                Some(d) => Some(
                    d.checked_add_signed(chrono::Duration::days(1))
                        .ok_or(FilterError { field: "a-to", message: "To must be a date like 2026-11-23.".into() })?,
                ),
                None => None,
            },
        })
    }
}

/// Every action the application records, in the order the filter lists them.
const ACTIONS: [&str; 14] = [
    "key_issued",
    "key_revoked",
    "key_renamed",
    "force_logout",
    "force_logout_and_suspend",
    "suspended",
    "unsuspended",
    "password_changed",
    "sign_in_failed",
    "token_login_failed",
    "service_enabled",
    "service_disabled",
    "key_type_enabled",
    "key_type_disabled",
];

/// One key in a grouped row.
#[derive(Serialize)]
struct GroupedKey {
    key_id: Option<i64>,
    name: String,
    key_type_label: String,
}

/// A line of the trail: one entry, or a force logout or bulk revocation with its keys.
#[derive(Serialize)]
struct Line {
    at: String,
    action: String,
    action_words: String,
    actor: String,
    target: String,
    target_id: Option<i64>,
    key_id: Option<i64>,
    key_name: String,
    key_type_label: Option<String>,
    ip: Option<String>,
    reason: Option<String>,
    /// The keys revoked together, when this line stands for several entries.
    keys: Vec<GroupedKey>,
}

/// Entries that one action wrote: a force logout's summary entry and the key revocations it
/// made, or the revocations of one "revoke selected", belong together when they have the same
/// actor, person, address and reason, and each follows the one before within a second (one
/// action writes them in one transaction; the force logout's summary reason is its reason with
/// "(N keys revoked)" after it). The page lists newest first, so the summary comes first.
/// Pages hold 100 entries, so a group that crosses a page's end continues on the next page as
/// a group of its own ("Keys revoked", same person and reason).
fn belongs(group: &[&AuditEntry], base: Option<&str>, e: &AuditEntry) -> bool {
    let Some(last) = group.last() else { return false };
    let head = group[0];
    e.action == "key_revoked"
        && (head.action == "key_revoked" || head.action.starts_with("force_logout"))
        && e.actor_id == head.actor_id
        && e.target_user_id == head.target_user_id
        && e.ip == head.ip
        && (last.at - e.at).num_milliseconds().abs() <= 1000
        && match (base, e.reason.as_deref()) {
            (Some(base), reason) => Some(base) == reason,
            // A force logout's first key: its reason is the summary's before " (N keys revoked)".
            (None, Some(reason)) => head
                .reason
                .as_deref()
                .and_then(|r| r.strip_prefix(reason))
                .is_some_and(|rest| rest.starts_with(" (") && rest.ends_with(" keys revoked)")),
            (None, None) => false,
        }
}

fn group<'a>(entries: &'a [(AuditEntry, String, String)]) -> Vec<Vec<&'a (AuditEntry, String, String)>> {
    let mut groups: Vec<Vec<&(AuditEntry, String, String)>> = Vec::new();
    let mut base: Option<String> = None;
    for item in entries {
        let e = &item.0;
        let current = groups.last().map(|g| g.iter().map(|i| &i.0).collect::<Vec<_>>()).unwrap_or_default();
        if belongs(&current, base.as_deref(), e) {
            base = e.reason.clone();
            groups.last_mut().expect("a current group").push(item);
        } else {
            base = (e.action == "key_revoked").then(|| e.reason.clone()).flatten();
            groups.push(vec![item]);
        }
    }
    groups
}

pub async fn page(state: State, admin: AdminSession, query: web::Query<AuditQuery>) -> Result<HttpResponse, AppError> {
    admin.require(Capability::ViewAudit)?;
    let q = query.into_inner();
    let mut ctx = admin.context(&state);
    ctx.insert("nav", "audit");
    ctx.insert("q", &q);
    let mut actions: Vec<(&str, String)> = ACTIONS.iter().map(|a| (*a, action_words(a))).collect();
    let asked = q.action.trim();
    if !asked.is_empty() && !ACTIONS.contains(&asked) {
        actions.push((asked, action_words(asked)));
    }
    ctx.insert("actions", &actions);
    let filter = match q.filter() {
        Ok(filter) => filter,
        Err(e) => {
            ctx.insert("rows", &Vec::<Line>::new());
            ctx.insert("next", &Option::<String>::None);
            ctx.insert("prev", &Option::<String>::None);
            ctx.insert("filter_error", &Some(e.message));
            ctx.insert("error_field", e.field);
            let mut response = render(&state.templates, "admin_audit.html", &ctx)?;
            *response.status_mut() = actix_web::http::StatusCode::BAD_REQUEST;
            return Ok(response);
        }
    };
    let page = page_number(q.page.as_deref());
    let found = state.core.audit(filter, page, PAGE_SIZE).await?;
    let type_label = |t: &str| state.core.registry().get(t).map_or(t.to_owned(), |k| k.label.clone());
    let key_name = |id: Option<i64>| id.and_then(|i| found.key_names.get(&i).cloned()).unwrap_or_default();
    let rows: Vec<Line> = group(&found.entries)
        .into_iter()
        .map(|items| {
            let (head, actor, target) = items[0];
            let grouped = items.len() > 1;
            let keys: Vec<GroupedKey> = if grouped {
                items
                    .iter()
                    .filter(|(e, _, _)| e.action == "key_revoked")
                    .map(|(e, _, _)| GroupedKey {
                        key_id: e.key_id,
                        name: key_name(e.key_id),
                        key_type_label: e.key_type.as_deref().map(type_label).unwrap_or_default(),
                    })
                    .collect()
            } else {
                Vec::new()
            };
            // A group's reason is said once: the keys' own, without the summary's count.
            let reason =
                if grouped { items.last().and_then(|(e, _, _)| e.reason.clone()) } else { head.reason.clone() };
            let action_words = if grouped && head.action == "key_revoked" {
                "Keys revoked".to_owned()
            } else {
                action_words(&head.action)
            };
            Line {
                at: admin.clock.exact(head.at),
                action: head.action.clone(),
                action_words,
                actor: actor.clone(),
                target: target.clone(),
                target_id: head.target_user_id,
                key_id: if grouped { None } else { head.key_id },
                key_name: if grouped { String::new() } else { key_name(head.key_id) },
                key_type_label: if grouped { None } else { head.key_type.as_deref().map(type_label) },
                ip: head.ip.clone(),
                reason,
                keys,
            }
        })
        .collect();
    let more = found.more;
    let link = |p: i64| {
        let mut next = q.clone();
        next.page = Some(p.to_string());
        format!("/admin/userkeys/audit.php?{}", serde_urlencoded::to_string(&next).unwrap_or_default())
    };
    ctx.insert("rows", &rows);
    ctx.insert("next", &more.then(|| link(page + 1)));
    ctx.insert("prev", &(page > 1).then(|| link(page - 1)));
    ctx.insert("filter_error", &Option::<String>::None);
    ctx.insert("error_field", "");
    render(&state.templates, "admin_audit.html", &ctx)
}

/// What an audit entry's action means, in words.
fn action_words(action: &str) -> String {
    match action {
        "key_issued" => "Key issued",
        "key_revoked" => "Key revoked",
        "key_renamed" => "Key renamed by its owner",
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

//! Every key on the site: a filtered, sorted, paged table; a CSV export of the same view;
//! revoking the selected keys.

use super::{field, page_number, AdminSession};
use crate::core::{Capability, Client, KeyEntry, KeyFilter, KeySort, KeyState};
use crate::db::key_search::KEY_COUNT_CAP;
use crate::domain::ip_restriction::network_hex_range;
use crate::domain::time::now;
use crate::web::error::AppError;
use crate::web::templates::{render, Clock};
use crate::web::wording::{ending, key_label, service_and_scope};
use crate::web::State;
use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};

pub const PAGE_SIZE: i64 = 50;

#[derive(Deserialize, Serialize, Default, Clone)]
pub struct KeyQuery {
    #[serde(default)]
    pub user: String,
    #[serde(default, rename = "type")]
    pub key_type: String,
    #[serde(default)]
    pub service: String,
    #[serde(default)]
    pub state: String,
    #[serde(default)]
    pub unused: String,
    #[serde(default)]
    pub never: String,
    /// Keys the unused-key expiry revokes within this many days, unless they are used.
    #[serde(default)]
    pub expiring: String,
    #[serde(default)]
    pub ip: String,
    #[serde(default)]
    pub sort: String,
    #[serde(default)]
    pub page: Option<String>,
}

/// A filter the list cannot apply: which field, and what to say beside the form.
#[derive(Debug, Clone)]
pub struct FilterError {
    pub field: &'static str,
    pub message: String,
}

fn bad(field: &'static str, message: impl Into<String>) -> FilterError {
    FilterError { field, message: message.into() }
}

impl KeyQuery {
    /// The filter the query asks for, or which part is not understood. With no state asked
    /// for, the list shows active keys; `state=any` shows every state.
    pub fn filter(&self, state: &State) -> Result<(KeyFilter, KeySort), FilterError> {
        let mut filter =
            KeyFilter { user: Some(self.user.clone()).filter(|u| !u.trim().is_empty()), ..Default::default() };
        if !self.key_type.is_empty() {
            if state.core.registry().get(&self.key_type).is_none() {
                return Err(bad("f-type", format!("There is no key type “{}”.", self.key_type)));
            }
            filter.key_type = Some(self.key_type.clone());
        }
        if !self.service.is_empty() {
            filter.service_id =
                Some(self.service.trim().parse().map_err(|_| bad("f-service", "Choose a service from the list."))?);
        }
        filter.state = match self.state.as_str() {
            "" | "active" => Some(KeyState::Active),
            "any" => None,
            "expired" => Some(KeyState::Expired),
            "revoked" => Some(KeyState::Revoked),
            _ => return Err(bad("f-state", "State must be active, expired, revoked or any.")),
        };
        if !self.unused.trim().is_empty() {
            let days: i64 =
                self.unused.trim().parse().map_err(|_| bad("f-unused", "“Not used for” must be a number of days."))?;
            if !(0..=36500).contains(&days) {
                return Err(bad("f-unused", "“Not used for” must be between 0 and 36500 days."));
            }
            filter.unused_days = Some(days);
        }
        filter.never_used = self.never == "1";
        if !self.expiring.trim().is_empty() {
            let days: i64 =
                self.expiring.trim().parse().ok().filter(|d| (0..=36500).contains(d)).ok_or_else(|| {
                    bad("f-expiring", "“Expires unused within” must be a number of days, 0 to 36500.")
                })?;
            filter.unused_expiry = Some(state.core.unused_expiry_thresholds(days, now()));
        }
        if !self.ip.trim().is_empty() {
            let network: ipnetwork::IpNetwork = self
                .ip
                .trim()
                .parse()
                .map_err(|_| bad("f-ip", format!("“{}” is not an IP address or CIDR range.", self.ip.trim())))?;
            filter.last_ip_range = Some(network_hex_range(&network));
        }
        let sort = match self.sort.as_str() {
            "" | "lastused_desc" => KeySort::LastUsedDesc,
            "lastused_asc" => KeySort::LastUsedAsc,
            "created_desc" => KeySort::CreatedDesc,
            "created_asc" => KeySort::CreatedAsc,
            _ => return Err(bad("f-sort", "Choose a sort order from the list.")),
        };
        Ok((filter, sort))
    }

    fn query_string(&self) -> String {
        serde_urlencoded::to_string(self).unwrap_or_default()
    }

    fn link(&self, page: i64) -> String {
        let mut q = self.clone();
        q.page = Some(page.to_string());
        format!("/admin/userkeys/index.php?{}", q.query_string())
    }

    /// This list without a page (what a revocation returns to).
    fn list_url(&self) -> String {
        let q = KeyQuery { page: None, ..self.clone() };
        format!("/admin/userkeys/index.php?{}", q.query_string())
    }

    /// Whether anything narrows the list beyond the default (active keys, newest use first).
    fn narrowed(&self) -> bool {
        !(self.user.trim().is_empty()
            && self.key_type.is_empty()
            && self.service.is_empty()
            && matches!(self.state.as_str(), "" | "active")
            && self.unused.trim().is_empty()
            && self.never.is_empty()
            && self.expiring.trim().is_empty()
            && self.ip.trim().is_empty()
            && matches!(self.sort.as_str(), "" | "lastused_desc"))
    }
}

#[derive(Serialize)]
struct Row {
    id: i64,
    user_id: i64,
    username: String,
    fullname: String,
    key_type: String,
    type_label: String,
    name: String,
    /// What the key is, in words, for labels: "Pixel 8 (Web-service token of alice)".
    label: String,
    service: String,
    state: &'static str,
    disabled: bool,
    created: String,
    created_exact: String,
    expires: String,
    expires_exact: String,
    revoked_reason: String,
    ip_restriction: String,
    last_used: String,
    last_used_exact: String,
    last_ip: String,
}

fn rows(keys: Vec<KeyEntry>, clock: &Clock) -> Vec<Row> {
    keys.into_iter()
        .map(|k| {
            let (username, fullname) = k.owner.clone().unwrap_or_default();
            let (expires, expires_exact) = ending(&k, clock);
            let service = service_and_scope(&k);
            Row {
                id: k.id,
                user_id: k.user_id,
                label: key_label(&k),
                username,
                fullname,
                type_label: k.type_label.clone(),
                disabled: k.disabled,
                key_type: k.key_type.clone(),
                name: k.name.clone(),
                service,
                state: k.state.as_str(),
                created: clock.relative(k.created_at),
                created_exact: clock.exact(k.created_at),
                expires,
                expires_exact,
                revoked_reason: k.revoked_at.and(k.revoked_reason.clone()).unwrap_or_default(),
                ip_restriction: k.ip_restriction.clone().unwrap_or_default(),
                last_used: k.last_used_at.map_or("Never".into(), |v| clock.relative(v)),
                last_used_exact: k.last_used_at.map(|v| clock.exact(v)).unwrap_or_default(),
                last_ip: k.last_used_ip.clone().unwrap_or_default(),
            }
        })
        .collect()
}

/// "1,234".
pub fn thousands(n: i64) -> String {
    let digits = n.abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}

/// "No keys", "1 key", "1,234 keys", "More than 10,000 keys".
fn count_words(total: i64) -> String {
    match total {
        0 => "No keys match".into(),
        1 => "1 key".into(),
        n if n >= KEY_COUNT_CAP => format!("More than {} keys", thousands(KEY_COUNT_CAP - 1)),
        n => format!("{} keys", thousands(n)),
    }
}

/// The most keys "Revoke all matching" revokes at once (as many as revoke selected takes).
pub const MOST_AT_ONCE: usize = 1000;

pub async fn index(state: State, admin: AdminSession, query: web::Query<KeyQuery>) -> Result<HttpResponse, AppError> {
    admin.require(Capability::ViewAllKeys)?;
    list_page(&state, &admin, query.into_inner(), None, None).await
}

/// The list, with a filter error beside the filter form or a selection error beside the
/// Revoke button (both answered 400, the form keeping what was typed).
pub async fn list_page(
    state: &State,
    admin: &AdminSession,
    query: KeyQuery,
    filter_error: Option<FilterError>,
    bulk_error: Option<String>,
) -> Result<HttpResponse, AppError> {
    let page = page_number(query.page.as_deref());
    let parsed = match filter_error {
        Some(e) => Err(e),
        None => query.filter(state),
    };
    let mut ctx = admin.context(state);
    ctx.insert("nav", "keys");
    let failed = parsed.is_err() || bulk_error.is_some();
    match parsed {
        Ok((filter, sort)) => {
            let active_only = filter.state == Some(KeyState::Active);
            let found = state.core.search_keys(filter, sort, page, PAGE_SIZE).await?;
            let listed = rows(found.entries, &admin.clock);
            ctx.insert("any_active", &listed.iter().any(|r| r.state == "active"));
            ctx.insert("rows", &listed);
            ctx.insert("count", &count_words(found.total));
            ctx.insert("next", &found.more.then(|| query.link(page + 1)));
            ctx.insert("services", &found.services);
            let can_all = admin.can(Capability::RevokeAnyKey) && active_only && found.total > 0;
            let all = (can_all && found.total <= MOST_AT_ONCE as i64).then(|| {
                (
                    format!("/admin/userkeys/revoke.php?{}", KeyQuery { page: None, ..query.clone() }.query_string()),
                    thousands(found.total),
                )
            });
            ctx.insert("revoke_all", &all);
            ctx.insert("too_many_for_all", &(can_all && found.total > MOST_AT_ONCE as i64));
            ctx.insert("filter_error", &Option::<String>::None);
            ctx.insert("error_field", "");
        }
        Err(e) => {
            let switches = state.core.switches().await?;
            let services: Vec<(i64, String)> =
                switches.services.iter().filter_map(|s| Some((s.id.parse::<i64>().ok()?, s.name.clone()))).collect();
            ctx.insert("rows", &Vec::<Row>::new());
            ctx.insert("any_active", &false);
            ctx.insert("count", "");
            ctx.insert("next", &Option::<String>::None);
            ctx.insert("services", &services);
            ctx.insert("revoke_all", &Option::<(String, String)>::None);
            ctx.insert("too_many_for_all", &false);
            ctx.insert("filter_error", &Some(e.message));
            ctx.insert("error_field", e.field);
        }
    }
    ctx.insert("bulk_error", &bulk_error);
    ctx.insert("q", &query);
    ctx.insert("state_value", if query.state.is_empty() { "active" } else { query.state.as_str() });
    ctx.insert("page", &page);
    ctx.insert("prev", &(page > 1).then(|| query.link(page - 1)));
    ctx.insert("back", &query.list_url());
    ctx.insert("narrowed", &query.narrowed());
    ctx.insert(
        "export",
        &format!("/admin/userkeys/export.php?{}", KeyQuery { page: None, ..query.clone() }.query_string()),
    );
    let types: Vec<(String, String)> = state.core.registry().all().map(|t| (t.id.clone(), t.label.clone())).collect();
    ctx.insert("types", &types);
    ctx.insert("can_revoke", &admin.can(Capability::RevokeAnyKey));
    let mut response = admin.page(state, "admin_keys.html", &ctx)?;
    if failed {
        *response.status_mut() = actix_web::http::StatusCode::BAD_REQUEST;
    }
    Ok(response)
}

fn csv_field(s: &str) -> String {
    // Quote every field; a leading = + - @ would be read as a formula by spreadsheets.
    let s = if s.starts_with(['=', '+', '-', '@']) { format!("'{s}") } else { s.to_owned() };
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// The filtered view as CSV, streamed in chunks, so a million keys never sit in memory.
pub async fn export(state: State, admin: AdminSession, query: web::Query<KeyQuery>) -> Result<HttpResponse, AppError> {
    admin.require(Capability::ViewAllKeys)?;
    let (filter, _) = query.filter(&state).map_err(|e| AppError::BadRequest(e.message))?;
    let header =
        "id,username,fullname,type,name,service,state,disabled,created,valid_until,ip_restriction,last_used,last_ip\n";
    let stream = futures_util::stream::unfold(Some(0i64), move |cursor| {
        let (state, filter) = (state.clone(), filter.clone());
        async move {
            let after = cursor?;
            // The export's times are RFC 3339 in UTC; the clock only fills the row's other fields.
            let clock = Clock { now: now(), zone: chrono_tz::UTC };
            let chunk = state.core.keys_after(filter, after, 1000).await;
            let keys = match chunk {
                Ok(keys) => keys,
                Err(e) => return Some((Err(actix_web::error::ErrorInternalServerError(e)), None)),
            };
            if keys.is_empty() {
                return None;
            }
            let last = keys.last().map(|k| k.id);
            let mut out = String::new();
            for k in keys {
                let row = &rows(vec![k.clone()], &clock)[0];
                let fields = [
                    row.id.to_string(),
                    row.username.clone(),
                    row.fullname.clone(),
                    row.key_type.clone(),
                    row.name.clone(),
                    row.service.clone(),
                    row.state.to_owned(),
                    row.disabled.to_string(),
                    k.created_at.and_utc().to_rfc3339(),
                    k.valid_until.map(|v| v.and_utc().to_rfc3339()).unwrap_or_default(),
                    row.ip_restriction.clone(),
                    k.last_used_at.map(|v| v.and_utc().to_rfc3339()).unwrap_or_default(),
                    row.last_ip.clone(),
                ];
                out.push_str(&fields.iter().map(|f| csv_field(f)).collect::<Vec<_>>().join(","));
                out.push('\n');
            }
            Some((Ok::<_, actix_web::Error>(web::Bytes::from(out)), last))
        }
    });
    let body =
        futures_util::stream::once(
            async move { Ok::<_, actix_web::Error>(web::Bytes::from_static(header.as_bytes())) },
        )
        .chain(stream);
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header(("Content-Disposition", "attachment; filename=\"userkeys.csv\""))
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
        .streaming(body))
}

use futures_util::StreamExt;

/// Where a revocation's confirmation and result lead back to: the list it came from (with its
/// filter) or the person's page; anything else is the unfiltered list.
pub fn safe_back(raw: Option<&str>) -> String {
    match raw.map(str::trim) {
        Some(back)
            if (back == "/admin/userkeys/index.php"
                || back.starts_with("/admin/userkeys/index.php?")
                || back.starts_with("/admin/userkeys/user.php?id="))
                && !back.contains(|c: char| c.is_control() || c == '\\' || c == '#')
                && back.len() <= 2000 =>
        {
            back.to_owned()
        }
        _ => "/admin/userkeys/index.php".to_owned(),
    }
}

/// The list or person `back` names, answered 400 with `message` beside its Revoke button.
async fn back_with_error(
    state: &State,
    admin: &AdminSession,
    back: &str,
    message: String,
) -> Result<HttpResponse, AppError> {
    if let Some(id) = back.strip_prefix("/admin/userkeys/user.php?id=") {
        if let Ok(id) = id.parse::<i64>() {
            return super::user::user_page(state, admin, id, Some(message)).await;
        }
    }
    let query = back.split_once('?').map_or("", |(_, q)| q);
    let query: KeyQuery = serde_urlencoded::from_str(query).unwrap_or_default();
    list_page(state, admin, query, None, Some(message)).await
}

/// How many of the keys a confirmation names one by one; the rest are "and N more".
const NAMED_ON_CONFIRMATION: usize = 20;

/// The confirmation of a revocation: the question with counts, the keys by name, type and
/// owner (the first 20, then "and N more"), a reason, and Cancel back to where it came from.
fn confirm_revocation(
    state: &State,
    admin: &AdminSession,
    entries: &[KeyEntry],
    back: &str,
    title: &str,
) -> Result<HttpResponse, AppError> {
    let mut owners: Vec<(&str, usize)> = Vec::new();
    for k in entries {
        let Some((username, _)) = k.owner.as_ref() else { continue };
        match owners.iter_mut().find(|(u, _)| u == username) {
            Some((_, count)) => *count += 1,
            None => owners.push((username, 1)),
        }
    }
    let n = entries.len();
    let whose = match owners.as_slice() {
        [] => String::new(),
        [(one, _)] => format!(" They belong to {one}."),
        few if few.len() <= 5 => {
            let named: Vec<String> = few
                .iter()
                .map(|(u, c)| format!("{u} ({} key{})", thousands(*c as i64), if *c == 1 { "" } else { "s" }))
                .collect();
            format!(" They belong to {} people: {}.", few.len(), named.join(", "))
        }
        many => format!(" They belong to {} people.", many.len()),
    };
    let mut listed: Vec<String> = entries.iter().take(NAMED_ON_CONFIRMATION).map(key_label).collect();
    if n > NAMED_ON_CONFIRMATION {
        listed.push(format!("and {} more", thousands((n - NAMED_ON_CONFIRMATION) as i64)));
    }
    let mut ctx = admin.context(state);
    ctx.insert("title", title);
    ctx.insert(
        "question",
        &format!(
            "Revoke {} selected key{}?{whose} Whatever uses {} stops working at once.",
            thousands(n as i64),
            if n == 1 { "" } else { "s" },
            if n == 1 { "it" } else { "them" }
        ),
    );
    ctx.insert("listed", &listed);
    ctx.insert("action_url", "/admin/userkeys/revoke.php");
    ctx.insert("cancel_url", back);
    let mut fields: Vec<(&str, String)> = entries.iter().map(|k| ("key", k.id.to_string())).collect();
    fields.push(("back", back.to_owned()));
    fields.push(("confirm", "1".into()));
    ctx.insert("fields", &fields);
    ctx.insert("reason_field", &true);
    ctx.insert(
        "confirm_label",
        &if n == 1 { "Revoke this key".to_owned() } else { format!("Revoke {} keys", thousands(n as i64)) },
    );
    render(&state.templates, "confirm.html", &ctx)
}

/// "Revoke all matching", the way to revoke a whole filtered list without a script: the
/// confirmation names the active keys the filter selects (at most 1000) and posts their ids,
/// so what is revoked is exactly what was confirmed.
pub async fn confirm_matching(
    state: State,
    admin: AdminSession,
    query: web::Query<KeyQuery>,
) -> Result<HttpResponse, AppError> {
    admin.require(Capability::RevokeAnyKey)?;
    let query = query.into_inner();
    let (filter, _) = match query.filter(&state) {
        Ok(parsed) => parsed,
        Err(e) => return list_page(&state, &admin, query, Some(e), None).await,
    };
    let back = query.list_url();
    if filter.state != Some(KeyState::Active) {
        let message = "Only active keys can be revoked: choose the state “Active”.".to_owned();
        return list_page(&state, &admin, query, None, Some(message)).await;
    }
    let entries = state.core.keys_after(filter, 0, MOST_AT_ONCE as i64 + 1).await?;
    if entries.is_empty() {
        return list_page(&state, &admin, query, None, Some("No active key matches: nothing to revoke.".into())).await;
    }
    if entries.len() > MOST_AT_ONCE {
        let message = format!("More than {MOST_AT_ONCE} keys match: narrow the filter to revoke them at once.");
        return list_page(&state, &admin, query, None, Some(message)).await;
    }
    confirm_revocation(&state, &admin, &entries, &back, "Revoke all matching keys")
}

/// Revoke selected: the table's checkboxes post here; a confirmation page posts again with
/// `confirm=1`. `back` is the list (or person) to return to.
pub async fn revoke_selected(
    state: State,
    admin: AdminSession,
    client: Client,
    body: web::Bytes,
) -> Result<HttpResponse, AppError> {
    let pairs = admin.posted_form(Capability::RevokeAnyKey, &body)?;
    let back = safe_back(field(&pairs, "back"));
    let mut ids: Vec<i64> = Vec::new();
    for (_, v) in pairs.iter().filter(|(k, _)| k == "key") {
        ids.push(v.trim().parse().map_err(|_| AppError::BadRequest(format!("“{v}” is not a key id.")))?);
    }
    ids.sort_unstable();
    ids.dedup();
    if ids.is_empty() {
        return back_with_error(&state, &admin, &back, "Select at least one key to revoke.".into()).await;
    }
    if ids.len() > MOST_AT_ONCE {
        return back_with_error(&state, &admin, &back, format!("Revoke at most {MOST_AT_ONCE} keys at once.")).await;
    }
    let reason = field(&pairs, "reason").unwrap_or("").trim().chars().take(500).collect::<String>();
    if field(&pairs, "confirm") != Some("1") {
        let filter = KeyFilter { key_ids: Some(ids), ..Default::default() };
        let entries = state.core.keys_after(filter, 0, MOST_AT_ONCE as i64).await?;
        if entries.is_empty() {
            return back_with_error(&state, &admin, &back, "Those keys do not exist.".into()).await;
        }
        return confirm_revocation(&state, &admin, &entries, &back, "Revoke selected keys");
    }
    let count = state.core.revoke_keys(admin.session.user.id, ids, reason, &client).await?;
    let message = match count {
        0 => "Nothing was revoked: those keys had already gone.".to_owned(),
        1 => "Revoked 1 key.".to_owned(),
        n => format!("Revoked {n} keys."),
    };
    crate::web::flash::redirect_with(&state, &back, &message)
}

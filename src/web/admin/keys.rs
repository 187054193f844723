//! Every key on the site: a filtered, sorted, paged table; a CSV export of the same view;
//! revoking the selected keys.

use super::{field, page_number, AdminSession};
use crate::core::{Capability, Client, KeyEntry, KeyFilter, KeySort, KeyState};
use crate::domain::ip_restriction::network_hex_range;
use crate::domain::time::{exact, now, relative};
use crate::web::error::AppError;
use crate::web::templates::render;
use crate::web::State;
use actix_web::{web, HttpResponse};
use chrono::NaiveDateTime;
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
    #[serde(default)]
    pub ip: String,
    #[serde(default)]
    pub sort: String,
    #[serde(default)]
    pub page: Option<String>,
    #[serde(default, skip_serializing)]
    pub revoked: Option<String>,
}

impl KeyQuery {
    /// The filter the query asks for, or a message saying which part is not understood.
    pub fn filter(&self, state: &State) -> Result<(KeyFilter, KeySort), String> {
        let mut filter =
            KeyFilter { user: Some(self.user.clone()).filter(|u| !u.trim().is_empty()), ..Default::default() };
        if !self.key_type.is_empty() {
            if state.core.registry().get(&self.key_type).is_none() {
                return Err(format!("There is no key type “{}”.", self.key_type));
            }
            filter.key_type = Some(self.key_type.clone());
        }
        if !self.service.is_empty() {
            filter.service_id =
                Some(self.service.trim().parse().map_err(|_| "Choose a service from the list.".to_owned())?);
        }
        filter.state = match self.state.as_str() {
            "" => None,
            "active" => Some(KeyState::Active),
            "expired" => Some(KeyState::Expired),
            "revoked" => Some(KeyState::Revoked),
            _ => return Err("State must be active, expired or revoked.".into()),
        };
        if !self.unused.trim().is_empty() {
            let days: i64 =
                self.unused.trim().parse().map_err(|_| "“Not used for” must be a number of days.".to_owned())?;
            if !(0..=36500).contains(&days) {
                return Err("“Not used for” must be between 0 and 36500 days.".into());
            }
            filter.unused_days = Some(days);
        }
        filter.never_used = self.never == "1";
        if !self.ip.trim().is_empty() {
            let network: ipnetwork::IpNetwork = self
                .ip
                .trim()
                .parse()
                .map_err(|_| format!("“{}” is not an IP address or CIDR range.", self.ip.trim()))?;
            filter.last_ip_range = Some(network_hex_range(&network));
        }
        let sort = match self.sort.as_str() {
            "" | "lastused_desc" => KeySort::LastUsedDesc,
            "lastused_asc" => KeySort::LastUsedAsc,
            "created_desc" => KeySort::CreatedDesc,
            "created_asc" => KeySort::CreatedAsc,
            _ => return Err("Unknown sort order.".into()),
        };
        Ok((filter, sort))
    }

    fn link(&self, page: i64) -> String {
        let mut q = self.clone();
        q.page = Some(page.to_string());
        format!("/admin/userkeys/index.php?{}", serde_urlencoded::to_string(&q).unwrap_or_default())
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
    service: String,
    state: &'static str,
    disabled: bool,
    created: String,
    created_exact: String,
    expires: String,
    ip_restriction: String,
    last_used: String,
    last_used_exact: String,
    last_ip: String,
}

fn rows(keys: Vec<KeyEntry>, now: NaiveDateTime) -> Vec<Row> {
    keys.into_iter()
        .map(|k| {
            let (username, fullname) = k.owner.clone().unwrap_or_default();
            Row {
                id: k.id,
                user_id: k.user_id,
                username,
                fullname,
                type_label: k.type_label.clone(),
                disabled: k.disabled,
                key_type: k.key_type.clone(),
                name: k.name.clone(),
                service: k.service.clone().unwrap_or_default(),
                state: k.state.as_str(),
                created: relative(k.created_at, now),
                created_exact: exact(k.created_at),
                expires: k.valid_until.map_or("Never".into(), |v| relative(v, now)),
                ip_restriction: k.ip_restriction.clone().unwrap_or_default(),
                last_used: k.last_used_at.map_or("Never".into(), |v| relative(v, now)),
                last_used_exact: k.last_used_at.map(exact).unwrap_or_default(),
                last_ip: k.last_used_ip.clone().unwrap_or_default(),
            }
        })
        .collect()
}

pub async fn index(state: State, admin: AdminSession, query: web::Query<KeyQuery>) -> Result<HttpResponse, AppError> {
    admin.require(Capability::ViewAllKeys)?;
    let query = query.into_inner();
    let (filter, sort) = query.filter(&state).map_err(AppError::BadRequest)?;
    let page = page_number(query.page.as_deref());
    let found = state.core.search_keys(filter, sort, page, PAGE_SIZE).await?;
    let more = found.more;
    let mut ctx = admin.context(&state);
    let listed = rows(found.entries, now());
    ctx.insert("rows", &listed);
    ctx.insert("q", &query);
    ctx.insert("page", &page);
    ctx.insert("next", &more.then(|| query.link(page + 1)));
    ctx.insert("prev", &(page > 1).then(|| query.link(page - 1)));
    ctx.insert(
        "export",
        &format!(
            "/admin/userkeys/export.php?{}",
            serde_urlencoded::to_string(KeyQuery { page: None, ..query.clone() }).unwrap_or_default()
        ),
    );
    let types: Vec<(String, String)> = state.core.registry().all().map(|t| (t.id.clone(), t.label.clone())).collect();
    ctx.insert("types", &types);
    ctx.insert("services", &found.services);
    ctx.insert("can_revoke", &admin.can(Capability::RevokeAnyKey));
    ctx.insert("revoked", &query.revoked);
    render(&state.templates, "admin_keys.html", &ctx)
}

fn csv_field(s: &str) -> String {
    // Quote every field; a leading = + - @ would be read as a formula by spreadsheets.
    let s = if s.starts_with(['=', '+', '-', '@']) { format!("'{s}") } else { s.to_owned() };
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// The filtered view as CSV, streamed in chunks, so a million keys never sit in memory.
pub async fn export(state: State, admin: AdminSession, query: web::Query<KeyQuery>) -> Result<HttpResponse, AppError> {
    admin.require(Capability::ViewAllKeys)?;
    let (filter, _) = query.filter(&state).map_err(AppError::BadRequest)?;
    let header =
        "id,username,fullname,type,name,service,state,disabled,created,valid_until,ip_restriction,last_used,last_ip\n";
    let stream = futures_util::stream::unfold(Some(0i64), move |cursor| {
        let (state, filter) = (state.clone(), filter.clone());
        async move {
            let after = cursor?;
            let now = now();
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
                let row = &rows(vec![k.clone()], now)[0];
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

/// Revoke selected: the table's checkboxes post here; a confirmation page posts again with
/// `confirm=1`.
pub async fn revoke_selected(
    state: State,
    admin: AdminSession,
    client: Client,
    body: web::Bytes,
) -> Result<HttpResponse, AppError> {
    let pairs = admin.posted_form(Capability::RevokeAnyKey, &body)?;
    let mut ids: Vec<i64> = Vec::new();
    for (_, v) in pairs.iter().filter(|(k, _)| k == "key") {
        ids.push(v.trim().parse().map_err(|_| AppError::BadRequest(format!("“{v}” is not a key id.")))?);
    }
    ids.sort_unstable();
    ids.dedup();
    if ids.is_empty() {
        return Err(AppError::BadRequest("Select at least one key to revoke.".into()));
    }
    if ids.len() > 1000 {
        return Err(AppError::BadRequest("Revoke at most 1000 keys at once.".into()));
    }
    let reason = field(&pairs, "reason").unwrap_or("").trim().chars().take(500).collect::<String>();
    if field(&pairs, "confirm") != Some("1") {
        let mut ctx = admin.context(&state);
        ctx.insert("title", "Revoke selected keys");
        ctx.insert(
            "question",
            &format!(
                "Revoke {} selected key{}? Whatever uses them stops working at once.",
                ids.len(),
                if ids.len() == 1 { "" } else { "s" }
            ),
        );
        ctx.insert("action_url", "/admin/userkeys/revoke.php");
        ctx.insert("cancel_url", "/admin/userkeys/index.php");
        let mut fields: Vec<(&str, String)> = ids.iter().map(|id| ("key", id.to_string())).collect();
        fields.push(("confirm", "1".into()));
        ctx.insert("fields", &fields);
        ctx.insert("reason_field", &true);
        ctx.insert("confirm_label", "Revoke");
        return render(&state.templates, "confirm.html", &ctx);
    }
    let count = state.core.revoke_keys(admin.session.user.id, ids, reason, &client).await?;
    Ok(crate::web::redirect(&format!("/admin/userkeys/index.php?revoked={count}")))
}

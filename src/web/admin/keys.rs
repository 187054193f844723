//! Every key on the site: a filtered, sorted, paged table; a CSV export of the same view;
//! revoking the selected keys.

use super::{field, form_pairs, page_number, AdminSession};
use crate::app::State;
use crate::db::key_search::{self, KeyFilter, KeySort, KeyState, ListedKey};
use crate::db::keys::Selection;
use crate::domain::capability::Capability;
use crate::domain::ip_restriction::network_hex_range;
use crate::domain::time::{exact, now, relative};
use crate::error::AppError;
use crate::keys::ops::{self, Actor, Scope};
use crate::web::client::ClientInfo;
use crate::web::switches::SiteSwitches;
use crate::web::templates::render;
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
            if state.registry.get(&self.key_type).is_none() {
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

pub fn key_state(k: &crate::db::models::KeyRow, now: NaiveDateTime) -> &'static str {
    if k.revoked_at.is_some() {
        "revoked"
    } else if k.valid_until.is_some_and(|v| v <= now) {
        "expired"
    } else {
        "active"
    }
}

/// The site's switches, read in one trip.
pub async fn load_switches(state: &State) -> Result<SiteSwitches, AppError> {
    Ok(state.db.read(SiteSwitches::read).await?)
}

fn rows(state: &State, keys: Vec<ListedKey>, switches: &SiteSwitches, now: NaiveDateTime) -> Vec<Row> {
    keys.into_iter()
        .map(|ListedKey { key: k, username, fullname }| Row {
            id: k.id,
            user_id: k.user_id,
            username,
            fullname,
            type_label: state.registry.get(&k.key_type).map_or(k.key_type.clone(), |t| t.label.clone()),
            disabled: switches.key_disabled(&state.registry, &k),
            key_type: k.key_type.clone(),
            name: k.name.clone(),
            service: switches.service_name(&k).unwrap_or_default().to_owned(),
            state: key_state(&k, now),
            created: relative(k.created_at, now),
            created_exact: exact(k.created_at),
            expires: k.valid_until.map_or("Never".into(), |v| relative(v, now)),
            ip_restriction: k.ip_restriction.clone().unwrap_or_default(),
            last_used: k.last_used_at.map_or("Never".into(), |v| relative(v, now)),
            last_used_exact: k.last_used_at.map(exact).unwrap_or_default(),
            last_ip: k.last_used_ip.clone().unwrap_or_default(),
        })
        .collect()
}

pub async fn index(state: State, admin: AdminSession, query: web::Query<KeyQuery>) -> Result<HttpResponse, AppError> {
    admin.require(Capability::ViewAllKeys)?;
    let query = query.into_inner();
    let (filter, sort) = query.filter(&state).map_err(AppError::BadRequest)?;
    let page = page_number(query.page.as_deref());
    let now = now();
    let found = state
        .db
        .read(move |conn| key_search::search(conn, &filter, sort, now, (page - 1) * PAGE_SIZE, PAGE_SIZE + 1))
        .await?;
    let more = found.len() as i64 > PAGE_SIZE;
    let switches = load_switches(&state).await?;
    let mut ctx = admin.context(&state);
    let listed = rows(&state, found.into_iter().take(PAGE_SIZE as usize).collect(), &switches, now);
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
    let types: Vec<(String, String)> = state.registry.all().map(|t| (t.id.clone(), t.label.clone())).collect();
    ctx.insert("types", &types);
    let mut services: Vec<(i64, String)> = switches.services.iter().map(|(id, (n, _))| (*id, n.clone())).collect();
    services.sort();
    ctx.insert("services", &services);
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
    let switches = std::sync::Arc::new(load_switches(&state).await?);
    let header =
        "id,username,fullname,type,name,service,state,disabled,created,valid_until,ip_restriction,last_used,last_ip\n";
    let stream = futures_util::stream::unfold(Some(0i64), move |cursor| {
        let (state, filter, switches) = (state.clone(), filter.clone(), switches.clone());
        async move {
            let after = cursor?;
            let now = now();
            let chunk = state.db.read(move |conn| key_search::search_after(conn, &filter, now, after, 1000)).await;
            let keys = match chunk {
                Ok(keys) => keys,
                Err(e) => return Some((Err(actix_web::error::ErrorInternalServerError(e)), None)),
            };
            if keys.is_empty() {
                return None;
            }
            let last = keys.last().map(|k| k.key.id);
            let mut out = String::new();
            for k in keys {
                let row = &rows(&state, vec![k.clone()], &switches, now)[0];
                let fields = [
                    row.id.to_string(),
                    row.username.clone(),
                    row.fullname.clone(),
                    row.key_type.clone(),
                    row.name.clone(),
                    row.service.clone(),
                    row.state.to_owned(),
                    row.disabled.to_string(),
                    k.key.created_at.and_utc().to_rfc3339(),
                    k.key.valid_until.map(|v| v.and_utc().to_rfc3339()).unwrap_or_default(),
                    row.ip_restriction.clone(),
                    k.key.last_used_at.map(|v| v.and_utc().to_rfc3339()).unwrap_or_default(),
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
        .streaming(body))
}

use futures_util::StreamExt;

/// Revoke selected: the table's checkboxes post here; a confirmation page posts again with
/// `confirm=1`.
pub async fn revoke_selected(
    state: State,
    admin: AdminSession,
    client: ClientInfo,
    body: web::Bytes,
) -> Result<HttpResponse, AppError> {
    admin.require(Capability::RevokeAnyKey)?;
    let pairs = form_pairs(&body);
    admin.session.check_sesskey(field(&pairs, "sesskey"))?;
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
        let mut fields: Vec<(&str, String)> = ids.iter().map(|id| ("key", id.to_string())).collect();
        fields.push(("confirm", "1".into()));
        ctx.insert("fields", &fields);
        ctx.insert("reason_field", &true);
        ctx.insert("confirm_label", "Revoke");
        return render(&state.templates, "confirm.html", &ctx);
    }
    let registry = state.registry.clone();
    let actor = Actor { user_id: Some(admin.session.user.id), ip: Some(client.ip_string()) };
    let reason = if reason.is_empty() { "revoked by an administrator".to_owned() } else { reason };
    let count = state
        .db
        .write(move |conn| {
            let mut count = 0;
            for id in ids {
                if let Some(key) = crate::db::keys::find(conn, id)? {
                    count += ops::revoke(
                        conn,
                        &registry,
                        key.user_id,
                        &Selection::One(id),
                        Scope::Everything,
                        &actor,
                        &reason,
                        now(),
                    )?;
                }
            }
            Ok(count)
        })
        .await?;
    Ok(crate::web::login::redirect(&format!("/admin/userkeys/index.php?revoked={count}")))
}

//! The self-service page (/user/managetoken.php, Moodle's path): every visible key of the
//! signed-in user, grouped by type, with its usage; revoke one, a type, or everything else.

use super::error::AppError;
use super::session::CurrentSession;
use super::templates::{base_context, render};
use super::{redirect, State};
use crate::core::{CheckedRevocation, Client, KeyEntry, OwnRevocation};
use crate::domain::time::{exact, now, relative};
use crate::keys::{KeyTypeRegistry, PUSH_DEVICE, WEBSERVICE_TOKEN};
use actix_web::{web, HttpResponse};
use chrono::NaiveDateTime;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

#[derive(Deserialize, Default)]
pub struct PageQuery {
    action: Option<String>,
    key: Option<String>,
    #[serde(rename = "type")]
    key_type: Option<String>,
    revoked: Option<usize>,
    /// A key type whose keys are all listed (others show their newest `KEYS_PER_TYPE`).
    show: Option<String>,
}

/// Keys listed per type before "Show all": the page stays quick and readable for a person with
/// hundreds of keys.
const KEYS_PER_TYPE: i64 = 25;

#[derive(Deserialize)]
pub struct ActionForm {
    action: String,
    key: Option<String>,
    #[serde(rename = "type")]
    key_type: Option<String>,
    sesskey: Option<String>,
    /// A new key's name, when creating one.
    name: Option<String>,
}

pub async fn page(
    state: State,
    session: CurrentSession,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, AppError> {
    let query = query.into_inner();
    if let Some(action) = query.action.as_deref() {
        let request = own_revocation(action, query.key.as_deref(), query.key_type.as_deref())?;
        let checked = state.core.check_own_revocation(session.user.id, Some(session.key_id), &request).await?;
        return confirm_page(&state, &session, &checked);
    }
    list_page(&state, &session, query.revoked, query.show.as_deref()).await
}

pub async fn act(
    state: State,
    session: CurrentSession,
    client: Client,
    form: web::Form<ActionForm>,
) -> Result<HttpResponse, AppError> {
    let form = form.into_inner();
    session.check_sesskey(form.sesskey.as_deref())?;
    if form.action == "create" {
        let key_type = form.key_type.as_deref().unwrap_or("");
        return super::newkey::create(&state, &session, &client, key_type, form.name.as_deref()).await;
    }
    let request = own_revocation(&form.action, form.key.as_deref(), form.key_type.as_deref())?;
    let count = state.core.revoke_own(session.user.id, Some(session.key_id), &request, false, &client).await?;
    Ok(redirect(&format!("/user/managetoken.php?revoked={count}")))
}

/// The revocation a page's action names.
fn own_revocation(action: &str, key: Option<&str>, key_type: Option<&str>) -> Result<OwnRevocation, AppError> {
    match action {
        "revoke" => key
            .and_then(|k| k.trim().parse().ok())
            .map(OwnRevocation::One)
            .ok_or_else(|| AppError::BadRequest("Choose a key to revoke.".into())),
        "revoketype" => Ok(OwnRevocation::OfType(key_type.unwrap_or("").to_owned())),
        "revokeothers" => Ok(OwnRevocation::EverythingElse),
        _ => Err(AppError::BadRequest("Unknown action.".into())),
    }
}

fn confirm_page(
    state: &State,
    session: &CurrentSession,
    checked: &CheckedRevocation,
) -> Result<HttpResponse, AppError> {
    let (question, fields, label): (String, Vec<(&str, String)>, &str) = match checked {
        CheckedRevocation::One { key_id, name, is_current } => (
            if *is_current {
                format!("Revoke “{name}”? This is the browser you are using now: you will be signed out.")
            } else {
                format!("Revoke “{name}”? Whatever uses it will stop working at once.")
            },
            vec![("action", "revoke".into()), ("key", key_id.to_string())],
            "Revoke",
        ),
        CheckedRevocation::OfType { id, label } => (
            format!("Revoke all your {}? Everything that uses them will stop working at once.", label.to_lowercase()),
            vec![("action", "revoketype".into()), ("type", id.clone())],
            "Revoke all",
        ),
        CheckedRevocation::EverythingElse { stopping } => (
            if stopping.is_empty() {
                "Nothing else is signed in to your account. Sign out everywhere else anyway?".into()
            } else {
                format!(
                    "Sign out everywhere else? These {} stop working at once; this browser stays signed in. \
                     Feed and calendar keys keep working: revoke them on their own.",
                    if stopping.len() == 1 { "one".to_owned() } else { stopping.len().to_string() }
                )
            },
            vec![("action", "revokeothers".into())],
            "Sign out everywhere else",
        ),
    };
    let listed: Vec<String> = match checked {
        CheckedRevocation::EverythingElse { stopping } => {
            stopping.iter().map(|(name, kind)| format!("{name} ({})", kind.to_lowercase())).collect()
        }
        _ => Vec::new(),
    };
    let mut ctx = base_context(state, session, false);
    ctx.insert("title", "Please confirm");
    ctx.insert("question", &question);
    ctx.insert("action_url", "/user/managetoken.php");
    ctx.insert("fields", &fields);
    ctx.insert("confirm_label", label);
    ctx.insert("listed", &listed);
    render(&state.templates, "confirm.html", &ctx)
}

#[derive(Serialize)]
struct TypeGroup {
    id: String,
    label: String,
    description: String,
    revocable: bool,
    creatable: bool,
    settings_url: Option<String>,
    keys: Vec<KeyView>,
    /// All the user's active keys of this type, listed or not.
    total: usize,
    /// The site has switched this type off: its keys open nothing until it is on again.
    switched_off: bool,
    /// Keys of this type shown on their device's entry instead (a phone's push registration).
    shown_with_devices: usize,
}

#[derive(Serialize)]
struct KeyView {
    id: i64,
    name: String,
    current: bool,
    service: Option<String>,
    service_off: bool,
    created: Moment,
    created_by: Option<String>,
    expires: Option<Moment>,
    ip_restriction: Option<String>,
    last_used: Option<Moment>,
    last_ip: Option<String>,
    agents: Vec<AgentView>,
    /// For an app's token: when its phone registered for push notifications, shown on the same
    /// entry (one entry per device).
    push_registered: Option<Moment>,
}

#[derive(Serialize)]
struct AgentView {
    agent: String,
    when: Moment,
    ip: String,
    hits: i64,
}

/// A time as people read it ("3 days ago"), with the exact time for the hover title.
#[derive(Serialize)]
struct Moment {
    relative: String,
    exact: String,
    iso: String,
}

fn moment(at: NaiveDateTime, now: NaiveDateTime) -> Moment {
    Moment { relative: relative(at, now), exact: exact(at), iso: at.and_utc().to_rfc3339() }
}

async fn list_page(
    state: &State,
    session: &CurrentSession,
    revoked: Option<usize>,
    show: Option<&str>,
) -> Result<HttpResponse, AppError> {
    let own = state.core.own_keys(session.user.id, KEYS_PER_TYPE, show).await?;
    let mut groups = group_keys(state.core.registry(), own.entries, session.key_id, now());
    for group in &mut groups {
        group.total = own.counts.get(&group.id).copied().unwrap_or(0).saturating_sub(group.shown_with_devices);
        group.switched_off = own.types_off.contains(&group.id);
    }
    let mut ctx = base_context(state, session, own.has_admin_pages);
    ctx.insert("groups", &groups);
    ctx.insert("revoked", &revoked);
    ctx.insert("key_count", &own.counts.values().sum::<usize>());
    // This browser is one; the button shows when something else is signed in.
    ctx.insert("others_signed_in", &own.signed_in.saturating_sub(1));
    render(&state.templates, "managetoken.html", &ctx)
}

fn group_keys(
    registry: &KeyTypeRegistry,
    keys: Vec<KeyEntry>,
    current_session: i64,
    now: NaiveDateTime,
) -> Vec<TypeGroup> {
    let mut by_type: HashMap<String, Vec<KeyEntry>> = HashMap::new();
    for key in keys {
        by_type.entry(key.key_type.clone()).or_default().push(key);
    }
    // A phone's push registration belongs to the entry of the token on the same device.
    let mut push_of_device: HashMap<String, NaiveDateTime> = HashMap::new();
    let mut folded_pushes = 0;
    let tokens_on_devices: Vec<String> =
        by_type.get(WEBSERVICE_TOKEN).into_iter().flatten().filter_map(|k| k.device_uuid.clone()).collect();
    if let Some(pushes) = by_type.get_mut(PUSH_DEVICE) {
        pushes.retain(|p| match p.device_uuid.as_deref().filter(|uuid| tokens_on_devices.iter().any(|t| t == uuid)) {
            Some(uuid) => {
                push_of_device.insert(uuid.to_owned(), p.created_at);
                folded_pushes += 1;
                false
            }
            None => true,
        });
    }
    registry
        .visible()
        .map(|t| TypeGroup {
            id: t.id.clone(),
            label: t.label.clone(),
            description: t.description.clone(),
            revocable: t.revocable,
            creatable: t.self_service.is_some(),
            settings_url: t.settings_url.clone(),
            total: 0,
            switched_off: false,
            shown_with_devices: if t.id == PUSH_DEVICE { folded_pushes } else { 0 },
            keys: by_type
                .remove(&t.id)
                .unwrap_or_default()
                .into_iter()
                .map(|k| KeyView {
                    push_registered: (k.key_type == WEBSERVICE_TOKEN)
                        .then(|| k.device_uuid.as_ref().and_then(|u| push_of_device.get(u)))
                        .flatten()
                        .map(|at| moment(*at, now)),
                    id: k.id,
                    current: k.id == current_session,
                    service: k.service.clone(),
                    service_off: k.service_off,
                    created: moment(k.created_at, now),
                    created_by: k.created_by.clone(),
                    expires: k.valid_until.map(|v| moment(v, now)),
                    ip_restriction: k.ip_restriction.clone(),
                    last_used: k.last_used_at.map(|v| moment(v, now)),
                    last_ip: k.last_used_ip.clone(),
                    agents: k
                        .agents
                        .into_iter()
                        .map(|a| AgentView {
                            when: moment(a.last_seen, now),
                            agent: a.agent,
                            ip: a.last_ip,
                            hits: a.hits,
                        })
                        .collect(),
                    name: k.name,
                })
                .collect(),
        })
        .collect()
}

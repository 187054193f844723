//! The self-service page (/user/managetoken.php, Moodle's path): every visible key of the
//! signed-in user, grouped by type, with its usage; revoke one, a type, or everything else.

use super::client::ClientInfo;
use super::login::redirect;
use super::session::CurrentSession;
use super::switches::SiteSwitches;
use super::templates::render;
use crate::app::State;
use crate::db::keys::Selection;
use crate::db::models::KeyRow;
use crate::domain::time::{exact, now, relative};
use crate::error::AppError;
use crate::keys::device_tokens::app_device_uuid;
use crate::keys::ops::{self, Actor, Scope};
use crate::keys::{KeyTypeRegistry, PUSH_DEVICE, WEBSERVICE_TOKEN};
use crate::usage::{summarise, AgentUse};
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
}

/// A requested revocation, checked against the registry and the user's own keys.
enum Revocation {
    One(KeyRow),
    OfType { id: String, label: String },
    EverythingElse,
}

pub async fn page(
    state: State,
    session: CurrentSession,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, AppError> {
    let query = query.into_inner();
    if let Some(action) = query.action.as_deref() {
        let revocation = resolve(&state, &session, action, query.key.as_deref(), query.key_type.as_deref()).await?;
        return confirm_page(&state, &session, &revocation);
    }
    list_page(&state, &session, query.revoked, query.show.as_deref()).await
}

pub async fn act(
    state: State,
    session: CurrentSession,
    client: ClientInfo,
    form: web::Form<ActionForm>,
) -> Result<HttpResponse, AppError> {
    let form = form.into_inner();
    session.check_sesskey(form.sesskey.as_deref())?;
    if form.action == "create" {
        return super::newkey::create(&state, &session, &client, form.key_type.as_deref().unwrap_or("")).await;
    }
    let revocation = resolve(&state, &session, &form.action, form.key.as_deref(), form.key_type.as_deref()).await?;
    let (selection, scope, reason) = match &revocation {
        Revocation::One(key) => (Selection::One(key.id), Scope::RevocableOnly, "revoked by its owner"),
        Revocation::OfType { id, .. } => (Selection::OfType(id.clone()), Scope::RevocableOnly, "revoked by its owner"),
        // "Everything else" includes hidden types: nothing but this browser stays signed in.
        Revocation::EverythingElse => {
            (Selection::AllExcept(Some(session.key.id)), Scope::RevocableOnly, "owner signed out everywhere else")
        }
    };
    let (user_id, registry) = (session.user.id, state.registry.clone());
    let actor = Actor { user_id: Some(user_id), ip: Some(client.ip_string()) };
    let device_push = match &revocation {
        Revocation::One(key) => device_uuid(key).map(|uuid| Selection::Device {
            device_id: uuid,
            key_type: PUSH_DEVICE.into(),
            service_id: None,
        }),
        _ => None,
    };
    let count = state
        .db
        .write(move |conn| {
            let mut count = ops::revoke(conn, &registry, user_id, &selection, scope, &actor, reason, now())?;
            // One entry per device: revoking it revokes the phone's push registration too.
            if let (Some(push), true) = (device_push, count > 0) {
                count += ops::revoke(conn, &registry, user_id, &push, scope, &actor, reason, now())?;
            }
            Ok(count)
        })
        .await?;
    if let Revocation::One(_) = revocation {
        if count == 0 {
            return Err(AppError::NotFound);
        }
    }
    Ok(redirect(&format!("/user/managetoken.php?revoked={count}")))
}

async fn resolve(
    state: &State,
    session: &CurrentSession,
    action: &str,
    key: Option<&str>,
    key_type: Option<&str>,
) -> Result<Revocation, AppError> {
    match action {
        "revoke" => {
            let id: i64 = key
                .and_then(|k| k.trim().parse().ok())
                .ok_or_else(|| AppError::BadRequest("Choose a key to revoke.".into()))?;
            let user_id = session.user.id;
            let row = state.db.read(move |conn| crate::db::keys::find(conn, id)).await?;
            // Someone else's key, or one already gone, is "not found": its existence is not told.
            let row = row.filter(|k| k.user_id == user_id && k.is_active(now())).ok_or(AppError::NotFound)?;
            let key_type = state.registry.get(&row.key_type);
            if key_type.is_some_and(|t| !t.revocable) {
                return Err(AppError::BadRequest("This kind of key cannot be revoked here.".into()));
            }
            Ok(Revocation::One(row))
        }
        "revoketype" => {
            let t = key_type
                .and_then(|t| state.registry.get(t))
                .filter(|t| t.visible)
                .ok_or_else(|| AppError::BadRequest("There is no such kind of key.".into()))?;
            if !t.revocable {
                return Err(AppError::BadRequest(format!("{} cannot be revoked here.", t.label)));
            }
            Ok(Revocation::OfType { id: t.id.clone(), label: t.label.clone() })
        }
        "revokeothers" => Ok(Revocation::EverythingElse),
        _ => Err(AppError::BadRequest("Unknown action.".into())),
    }
}

fn confirm_page(state: &State, session: &CurrentSession, revocation: &Revocation) -> Result<HttpResponse, AppError> {
    let (question, fields, label): (String, Vec<(&str, String)>, &str) = match revocation {
        Revocation::One(key) => (
            if key.id == session.key.id {
                format!("Revoke “{}”? This is the browser you are using now: you will be signed out.", key.name)
            } else {
                format!("Revoke “{}”? Whatever uses it will stop working at once.", key.name)
            },
            vec![("action", "revoke".into()), ("key", key.id.to_string())],
            "Revoke",
        ),
        Revocation::OfType { id, label } => (
            format!("Revoke all your {}? Everything that uses them will stop working at once.", label.to_lowercase()),
            vec![("action", "revoketype".into()), ("type", id.clone())],
            "Revoke all",
        ),
        Revocation::EverythingElse => (
            "Sign out everywhere else? Every other browser, app, device and key will stop working; only this browser stays signed in.".into(),
            vec![("action", "revokeothers".into())],
            "Sign out everywhere else",
        ),
    };
    let mut ctx = base_context(state, session, false);
    ctx.insert("title", "Please confirm");
    ctx.insert("question", &question);
    ctx.insert("action_url", "/user/managetoken.php");
    ctx.insert("fields", &fields);
    ctx.insert("confirm_label", label);
    render(&state.templates, "confirm.html", &ctx)
}

pub(super) fn base_context(state: &crate::app::AppState, session: &CurrentSession, admin_link: bool) -> tera::Context {
    let mut ctx = tera::Context::new();
    ctx.insert("admin_link", &admin_link);
    ctx.insert("site_name", &state.config.site_name);
    ctx.insert("user", &session.user.fullname);
    ctx.insert("sesskey", &session.sesskey);
    ctx
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
    // Uses recorded by this instance but not yet written belong on the page too.
    state.usage.settle(&state.db).await?;
    let user_id = session.user.id;
    let now = now();
    let show = show.map(str::to_owned);
    let (keys, counts, usage, switches, creators) = state
        .db
        .read(move |conn| {
            let (keys, counts) = crate::db::keys::listed_for_user(conn, user_id, now, KEYS_PER_TYPE, show.as_deref())?;
            let counts: HashMap<String, usize> = counts.into_iter().map(|(t, n)| (t, n as usize)).collect();
            let ids: Vec<i64> = keys.iter().map(|k| k.id).collect();
            let usage = crate::db::usage::summary_for_keys(conn, &ids)?;
            let switches = SiteSwitches::read(conn)?;
            let mut creators = HashMap::new();
            for creator in keys.iter().filter_map(|k| k.created_by).filter(|c| *c != user_id) {
                if let Some(u) = crate::db::users::find(conn, creator)? {
                    creators.insert(creator, u.fullname);
                }
            }
            Ok((keys, counts, usage, switches, creators))
        })
        .await?;
    let mut groups = group_keys(&state.registry, keys, summarise(&usage), &switches, &creators, session.key.id, now);
    for group in &mut groups {
        group.total = counts.get(&group.id).copied().unwrap_or(0).saturating_sub(group.shown_with_devices);
        group.switched_off = !switches.type_enabled(&state.registry, &group.id);
    }
    let admin_link = !super::admin::capabilities(state, &session.user).await?.is_empty();
    let mut ctx = base_context(state, session, admin_link);
    ctx.insert("groups", &groups);
    ctx.insert("revoked", &revoked);
    ctx.insert("key_count", &counts.values().sum::<usize>());
    render(&state.templates, "managetoken.html", &ctx)
}

/// The phone a token is linked to, by its uuid.
fn device_uuid(key: &KeyRow) -> Option<String> {
    app_device_uuid(key.device_id.as_deref()?).map(str::to_owned)
}

fn group_keys(
    registry: &KeyTypeRegistry,
    keys: Vec<KeyRow>,
    mut usage: HashMap<i64, Vec<AgentUse>>,
    switches: &SiteSwitches,
    creators: &HashMap<i64, String>,
    current_session: i64,
    now: NaiveDateTime,
) -> Vec<TypeGroup> {
    let mut by_type: HashMap<String, Vec<KeyRow>> = HashMap::new();
    for key in keys {
        by_type.entry(key.key_type.clone()).or_default().push(key);
    }
    // A phone's push registration belongs to the entry of the token on the same device.
    let mut push_of_device: HashMap<String, NaiveDateTime> = HashMap::new();
    let mut folded_pushes = 0;
    let tokens_on_devices: Vec<String> =
        by_type.get(WEBSERVICE_TOKEN).into_iter().flatten().filter_map(|k| device_uuid(k)).collect();
    if let Some(pushes) = by_type.get_mut(PUSH_DEVICE) {
        pushes.retain(|p| match p.device_id.as_deref().filter(|uuid| tokens_on_devices.iter().any(|t| t == uuid)) {
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
            creatable: super::newkey::creatable(&t.id),
            settings_url: t.settings_url.clone(),
            total: 0,
            switched_off: false,
            shown_with_devices: if t.id == PUSH_DEVICE { folded_pushes } else { 0 },
            keys: by_type
                .remove(&t.id)
                .unwrap_or_default()
                .into_iter()
                .map(|k| KeyView {
                    push_registered: device_uuid(&k).and_then(|u| push_of_device.get(&u)).map(|at| moment(*at, now)),
                    id: k.id,
                    current: k.id == current_session,
                    service: switches.service_name(&k).map(str::to_owned),
                    service_off: switches.service_off(&k),
                    created: moment(k.created_at, now),
                    created_by: k.created_by.and_then(|c| creators.get(&c).cloned()),
                    expires: k.valid_until.map(|v| moment(v, now)),
                    ip_restriction: k.ip_restriction.clone(),
                    last_used: k.last_used_at.map(|v| moment(v, now)),
                    last_ip: k.last_used_ip.clone(),
                    agents: usage
                        .remove(&k.id)
                        .unwrap_or_default()
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

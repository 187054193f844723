//! The self-service page (/user/managetoken.php, Moodle's path): every visible key of the
//! signed-in user, one entry per device or client (a phone's token and its push registration
//! together), each a line or two with its details one click away; revoke or rename one, revoke
//! a type, or sign out everywhere else.

use super::error::AppError;
use super::flash;
use super::session::CurrentSession;
use super::templates::{base_context, render, Clock, Moment};
use super::wording::{in_sentence, singular};
use super::State;
use crate::core::{CheckedRevocation, Client, CoreError, KeyEntry, OwnRevocation};
use crate::domain::time::relative;
use crate::keys::{KeyTypeRegistry, PUSH_DEVICE, WEBSERVICE_TOKEN};
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::NaiveDateTime;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

#[derive(Deserialize, Default)]
pub struct PageQuery {
    action: Option<String>,
    key: Option<String>,
    #[serde(rename = "type")]
    key_type: Option<String>,
    /// A key type whose keys are all listed (others show their newest `KEYS_PER_TYPE`).
    show: Option<String>,
}

/// Keys listed per type before "Show all": the page stays quick and readable for a person with
/// hundreds of keys.
const KEYS_PER_TYPE: i64 = 25;

/// A key used this recently is "active now".
const ACTIVE_NOW_MINUTES: i64 = 5;

#[derive(Deserialize)]
pub struct ActionForm {
    action: String,
    key: Option<String>,
    #[serde(rename = "type")]
    key_type: Option<String>,
    sesskey: Option<String>,
    /// A new key's name, when creating one; a key's new name, when renaming.
    name: Option<String>,
    /// A new-client alert, for "It was me" and "Revoke it".
    alert: Option<String>,
}

pub async fn page(
    state: State,
    session: CurrentSession,
    req: HttpRequest,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, AppError> {
    let query = query.into_inner();
    if let Some(action) = query.action.as_deref() {
        let request = own_revocation(action, query.key.as_deref(), query.key_type.as_deref())?;
        return match state.core.check_own_revocation(session.user.id, Some(session.key_id), &request).await {
            Ok(checked) => confirm_page(&state, &session, &checked),
            // Revoked already (in another tab, say): the page says so above the list.
            Err(CoreError::Invalid(message)) if matches!(request, OwnRevocation::One(_)) => {
                flash::redirect_with(&state, "/user/managetoken.php", &message)
            }
            Err(e) => Err(e.into()),
        };
    }
    list_page(&state, &session, &req, query.show.as_deref()).await
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
    if form.action == "dismissalert" || form.action == "revokealert" {
        return alert_action(&state, &session, &client, &form).await;
    }
    if form.action == "rename" {
        let key = form.key.as_deref().and_then(|k| k.trim().parse().ok()).ok_or(AppError::NotFound)?;
        return match state.core.rename_own(session.user.id, key, form.name.as_deref().unwrap_or(""), &client).await {
            Ok(name) => flash::redirect_with(
                &state,
                &format!("/user/managetoken.php#key-{key}"),
                &format!("Renamed to “{name}”."),
            ),
            Err(CoreError::Invalid(message)) => {
                flash::redirect_with(&state, &format!("/user/managetoken.php#key-{key}"), &message)
            }
            Err(e) => Err(e.into()),
        };
    }
    let request = own_revocation(&form.action, form.key.as_deref(), form.key_type.as_deref())?;
    let checked = match state.core.check_own_revocation(session.user.id, Some(session.key_id), &request).await {
        Ok(checked) => checked,
        Err(CoreError::Invalid(message)) if matches!(request, OwnRevocation::One(_)) => {
            return flash::redirect_with(&state, "/user/managetoken.php", &message)
        }
        Err(e) => return Err(e.into()),
    };
    let count = state.core.revoke_own(session.user.id, Some(session.key_id), &request, false, &client).await?;
    let message = match (&checked, count) {
        (_, 0) => "Nothing was revoked: it had already gone.".to_owned(),
        (CheckedRevocation::One { name, .. }, _) => {
            format!("Revoked “{name}”: whatever used it can no longer open your account.")
        }
        (CheckedRevocation::OfType { label, .. }, 1) => format!("Revoked your one {}.", in_sentence(singular(label))),
        (CheckedRevocation::OfType { label, .. }, n) => format!("Revoked your {n} {}.", in_sentence(label)),
        (CheckedRevocation::EverythingElse { .. }, 1) => {
            "Signed out everywhere else: one browser or app was signed out.".to_owned()
        }
        (CheckedRevocation::EverythingElse { .. }, n) => {
            format!("Signed out everywhere else: {n} browsers and apps were signed out.")
        }
    };
    flash::redirect_with(&state, "/user/managetoken.php", &message)
}

/// "It was me" dismisses a new-client alert; "Revoke it" asks the usual confirmation to revoke
/// its key.
async fn alert_action(
    state: &State,
    session: &CurrentSession,
    client: &Client,
    form: &ActionForm,
) -> Result<HttpResponse, AppError> {
    let id = form.alert.as_deref().and_then(|a| a.trim().parse().ok()).ok_or(AppError::NotFound)?;
    let outcome = if form.action == "dismissalert" {
        state
            .core
            .dismiss_client_alert(session.user.id, id, client)
            .await
            .map(|alert| format!("Noted: {} using “{}” was you.", alert.agent, alert.key_name))
    } else {
        let alert = state.core.open_client_alert(session.user.id, id).await;
        match alert {
            Ok(alert) => {
                let request = OwnRevocation::One(alert.key_id);
                return match state.core.check_own_revocation(session.user.id, Some(session.key_id), &request).await {
                    Ok(checked) => confirm_page(state, session, &checked),
                    Err(CoreError::Invalid(message)) => flash::redirect_with(state, "/user/managetoken.php", &message),
                    Err(e) => Err(e.into()),
                };
            }
            Err(e) => Err(e),
        }
    };
    match outcome {
        Ok(message) => flash::redirect_with(state, "/user/managetoken.php", &message),
        // Dismissed already, in another tab, or its key revoked.
        Err(CoreError::NotFound) => {
            flash::redirect_with(state, "/user/managetoken.php", "That notice had already gone.")
        }
        Err(e) => Err(e.into()),
    }
}

/// A new-client alert as the page shows it.
#[derive(Serialize)]
struct AlertView {
    id: i64,
    key_id: i64,
    key_name: String,
    key_kind: String,
    agent: String,
    ip: String,
    new_client: bool,
    when: Moment,
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

/// The page: who is signed in, then feeds, calendars and everything else.
#[derive(Serialize)]
struct Section {
    id: &'static str,
    heading: &'static str,
    description: &'static str,
    entries: Vec<Entry>,
    /// Types with more than one key here: each gets its own "Revoke all", confirmed apart.
    revoke_all: Vec<TypeCount>,
    /// Types with more keys than listed.
    more: Vec<TypeCount>,
    /// Types a person creates keys of, here.
    create: Vec<TypeCount>,
    /// What each kind of key here is, for "What are these?".
    kinds: Vec<Kind>,
}

#[derive(Serialize)]
struct Kind {
    label: String,
    description: String,
    settings_url: Option<String>,
}

#[derive(Serialize)]
struct TypeCount {
    id: String,
    /// In a sentence: "calendar export keys".
    label: String,
    /// One of them: "calendar export key".
    noun: String,
    count: usize,
    switched_off: bool,
}

/// One device or client: a line to recognise it, a line for its last use, its keys behind
/// "Details".
#[derive(Serialize)]
struct Entry {
    /// The key a "Revoke" of the entry revokes (a phone's token takes its push registration).
    id: i64,
    title: String,
    kind: String,
    current: bool,
    revocable: bool,
    status: String,
    status_time: Option<Moment>,
    /// Said beside the status: switched off by the site, expiring soon.
    warning: Option<String>,
    /// "Expires if unused by 3 March", where the site revokes keys of its type left unused.
    expires_unused: Option<String>,
    keys: Vec<KeyView>,
}

#[derive(Serialize)]
struct KeyView {
    id: i64,
    name: String,
    kind: String,
    service: Option<String>,
    created: Moment,
    created_by: Option<String>,
    expires: Option<Moment>,
    ip_restriction: Option<String>,
    last_used: Option<Moment>,
    last_ip: Option<String>,
    agents: Vec<AgentView>,
    uses_30_days: i64,
    chart: String,
    /// A phone's push registration: the site sends it notifications; nothing signs in with it.
    notifications: bool,
    rename_max: usize,
    /// A personal access token's own functions.
    functions: Option<Vec<String>>,
}

#[derive(Serialize)]
struct AgentView {
    agent: String,
    when: Moment,
    ip: String,
    hits: i64,
}

async fn list_page(
    state: &State,
    session: &CurrentSession,
    req: &HttpRequest,
    show: Option<&str>,
) -> Result<HttpResponse, AppError> {
    let own = state.core.own_keys(session.user.id, KEYS_PER_TYPE, show).await?;
    let clock = Clock::for_request(req, state);
    let registry = state.core.registry();
    let listed_per_type = own.entries.iter().fold(HashMap::<String, usize>::new(), |mut m, k| {
        *m.entry(k.key_type.clone()).or_default() += 1;
        m
    });
    let entries = entries_of(registry, own.entries, session.key_id, &clock);
    let (signed_in, other): (Vec<_>, Vec<_>) = entries.into_iter().partition(|(_, signs_in)| *signs_in);
    let strip = |entries: Vec<(Entry, bool)>| entries.into_iter().map(|(e, _)| e).collect::<Vec<_>>();
    let (signed_in, other) = (strip(signed_in), strip(other));
    let count = |t: &crate::keys::KeyType| TypeCount {
        id: t.id.clone(),
        label: in_sentence(&t.label),
        noun: in_sentence(singular(&t.label)),
        count: own.counts.get(&t.id).copied().unwrap_or(0),
        switched_off: own.types_off.contains(&t.id),
    };
    let section = |id, heading, description, entries: Vec<Entry>, signs_in: bool| {
        let types: Vec<&crate::keys::KeyType> = registry.visible().filter(|t| t.policy.signs_in == signs_in).collect();
        Section {
            id,
            heading,
            description,
            entries,
            revoke_all: types
                .iter()
                .filter(|t| t.revocable && t.id != PUSH_DEVICE && own.counts.get(&t.id).copied().unwrap_or(0) > 1)
                .map(|t| count(t))
                .collect(),
            more: types
                .iter()
                .filter(|t| {
                    own.counts.get(&t.id).copied().unwrap_or(0) > listed_per_type.get(&t.id).copied().unwrap_or(0)
                })
                .map(|t| count(t))
                .collect(),
            create: types.iter().filter(|t| t.self_service.is_some()).map(|t| count(t)).collect(),
            kinds: types
                .iter()
                .map(|t| Kind {
                    label: t.label.clone(),
                    description: t.description.clone(),
                    settings_url: t.settings_url.clone(),
                })
                .collect(),
        }
    };
    let sections = vec![
        section("signedin", "Signed in", "Browsers, apps and devices that can open your account.", signed_in, true),
        section(
            "feeds",
            "Feeds, calendars and other keys",
            "Addresses that let a feed reader, a calendar or another program read from your account without signing in.",
            other,
            false,
        ),
    ];
    let alerts: Vec<AlertView> = own
        .alerts
        .iter()
        .map(|a| AlertView {
            id: a.id,
            key_id: a.key_id,
            key_name: a.key_name.clone(),
            key_kind: a.key_kind.clone(),
            agent: a.agent.clone(),
            ip: a.ip.clone(),
            new_client: a.new_client,
            when: clock.moment(a.first_seen),
        })
        .collect();
    let mut ctx = base_context(state, session, own.has_admin_pages);
    ctx.insert("alerts", &alerts);
    ctx.insert("sections", &sections);
    ctx.insert("personal_tokens", &own.personal_tokens);
    ctx.insert("flash", &flash::take(req));
    // This browser is one; the button shows when something else is signed in.
    ctx.insert("others_signed_in", &own.signed_in.saturating_sub(1));
    let mut response = render(&state.templates, "managetoken.html", &ctx)?;
    flash::clear(&mut response)?;
    Ok(response)
}

/// One entry per device or client, with whether it signs in: a phone's push registration goes
/// on its token's entry, every other key is an entry of its own. Newest use first, this
/// browser on top.
fn entries_of(registry: &KeyTypeRegistry, keys: Vec<KeyEntry>, current: i64, clock: &Clock) -> Vec<(Entry, bool)> {
    let tokens_on_devices: Vec<String> =
        keys.iter().filter(|k| k.key_type == WEBSERVICE_TOKEN).filter_map(|k| k.device_uuid.clone()).collect();
    let (pushes, keys): (Vec<KeyEntry>, Vec<KeyEntry>) = keys.into_iter().partition(|k| {
        k.key_type == PUSH_DEVICE && k.device_uuid.as_ref().is_some_and(|u| tokens_on_devices.contains(u))
    });
    let mut push_of: HashMap<String, KeyEntry> =
        pushes.into_iter().filter_map(|p| Some((p.device_uuid.clone()?, p))).collect();
    let mut entries: Vec<(Entry, bool, Option<NaiveDateTime>)> = keys
        .into_iter()
        .map(|key| {
            let key_type = registry.get(&key.key_type);
            let signs_in = key_type.is_some_and(|t| t.policy.signs_in);
            let push = (key.key_type == WEBSERVICE_TOKEN)
                .then(|| key.device_uuid.as_ref().and_then(|u| push_of.remove(u)))
                .flatten();
            let last_used = [key.last_used_at, push.as_ref().and_then(|p| p.last_used_at)].into_iter().flatten().max();
            let entry = entry_of(registry, key, push, current, clock);
            (entry, signs_in, last_used)
        })
        .collect();
    entries.sort_by(|a, b| b.0.current.cmp(&a.0.current).then(b.2.cmp(&a.2)));
    entries.into_iter().map(|(e, s, _)| (e, s)).collect()
}

fn entry_of(registry: &KeyTypeRegistry, key: KeyEntry, push: Option<KeyEntry>, current: i64, clock: &Clock) -> Entry {
    let kind = if key.function_scope.is_some() {
        crate::core::PERSONAL_TOKEN_LABEL.to_owned()
    } else {
        registry.get(&key.key_type).map_or(key.type_label.clone(), |t| singular(&t.label).to_owned())
    };
    let revocable = registry.get(&key.key_type).is_some_and(|t| t.revocable);
    let is_current = key.id == current;
    // The latest use of any of its keys (a phone's push registration is used by the site).
    let last = std::iter::once(&key)
        .chain(push.as_ref())
        .filter_map(|k| k.last_used_at.map(|at| (at, k.last_used_ip.clone())))
        .max_by_key(|(at, _)| *at);
    let agent = key.agents.iter().max_by_key(|a| a.last_seen).map(|a| a.agent.clone()).filter(|a| *a != key.name);
    let (status, status_time) = match (&last, is_current) {
        (_, true) => ("Active now, in this browser".to_owned(), None),
        (Some((at, ip)), false) => {
            let active = (clock.now - *at).num_minutes() < ACTIVE_NOW_MINUTES;
            let mut line = if active { "Active now".to_owned() } else { format!("Used {}", relative(*at, clock.now)) };
            if let Some(agent) = &agent {
                line.push_str(&format!(" by {agent}"));
            }
            if let Some(ip) = ip {
                line.push_str(&format!(" from {ip}"));
            }
            (line, Some(clock.moment(*at)))
        }
        (None, false) => (format!("Not used yet · created {}", relative(key.created_at, clock.now)), None),
    };
    let warning = if key.disabled {
        Some(
            if key.service_off { "Its service is switched off by the site" } else { "Switched off by the site" }
                .to_owned(),
        )
    } else {
        // A browser's session ends by design and moves on with use: only other keys are told.
        key.valid_until
            .filter(|v| key.key_type != crate::keys::WEB_SESSION && (*v - clock.now).num_days() < 3)
            .map(|v| format!("Expires {}", relative(v, clock.now)))
    };
    let (id, title) = (key.id, key.name.clone());
    let expires_unused = key.expires_unused_at.map(|at| format!("Expires if unused by {}", clock.day(at)));
    let keys = std::iter::once(key).chain(push).map(|k| key_view(registry, k, clock)).collect();
    Entry { id, title, kind, current: is_current, revocable, status, status_time, warning, expires_unused, keys }
}

fn key_view(registry: &KeyTypeRegistry, k: KeyEntry, clock: &Clock) -> KeyView {
    KeyView {
        id: k.id,
        kind: if k.function_scope.is_some() {
            crate::core::PERSONAL_TOKEN_LABEL.to_owned()
        } else {
            registry.get(&k.key_type).map_or(k.type_label.clone(), |t| singular(&t.label).to_owned())
        },
        service: k.service.clone(),
        created: clock.moment(k.created_at),
        created_by: k.created_by.clone(),
        expires: k.valid_until.map(|v| clock.moment(v)),
        ip_restriction: k.ip_restriction.clone(),
        last_used: k.last_used_at.map(|v| clock.moment(v)),
        last_ip: k.last_used_ip.clone(),
        uses_30_days: k.daily_uses.iter().sum(),
        chart: super::chart::daily_uses_svg(&k.daily_uses, clock.now.date()),
        agents: k
            .agents
            .into_iter()
            .map(|a| AgentView { when: clock.moment(a.last_seen), agent: a.agent, ip: a.last_ip, hits: a.hits })
            .collect(),
        rename_max: crate::core::MAX_KEY_NAME_CHARS,
        notifications: k.key_type == PUSH_DEVICE,
        functions: k.function_scope,
        name: k.name,
    }
}

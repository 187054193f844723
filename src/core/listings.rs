//! The lists pages and the app show: a person's own keys, one person's whole key set, every
//! key on the site (filtered and paged, or streamed for export), the audit trail. Each key is
//! one `KeyEntry`, whichever list it is in; transports only lay it out.

use super::{Core, CoreError, CoreResult};
use crate::db::audit::AuditFilter;
use crate::db::key_search::{self, KeyFilter, KeySort, ListedKey};
use crate::db::models::{AuditEntry, KeyRow, User};
use crate::db::{DbConn, DbResult};
use crate::domain::time::now;
use crate::keys::device_tokens::app_device_uuid;
use crate::keys::KeyTypeRegistry;
use crate::usage::{summarise, AgentUse};
use chrono::NaiveDateTime;
use std::collections::{HashMap, HashSet};

pub use crate::db::key_search::KeyState;

/// One key as every list shows it.
#[derive(Clone, Debug)]
pub struct KeyEntry {
    pub id: i64,
    pub user_id: i64,
    /// The owner's names, in lists of many people's keys.
    pub owner: Option<(String, String)>,
    pub key_type: String,
    pub type_label: String,
    pub type_visible: bool,
    pub name: String,
    pub service_id: Option<i64>,
    pub service: Option<String>,
    pub service_off: bool,
    /// A personal access token's own functions (narrower than its service's), if it has them.
    pub function_scope: Option<Vec<String>>,
    /// Its type or its service is switched off by the site.
    pub disabled: bool,
    pub state: KeyState,
    pub created_at: NaiveDateTime,
    /// Who issued it, when that was someone other than its owner.
    pub created_by: Option<String>,
    pub valid_until: Option<NaiveDateTime>,
    pub ip_restriction: Option<String>,
    pub last_used_at: Option<NaiveDateTime>,
    pub last_used_ip: Option<String>,
    pub revoked_at: Option<NaiveDateTime>,
    pub revoked_reason: Option<String>,
    /// The phone a token is linked to (its uuid), or a push registration's own uuid.
    pub device_uuid: Option<String>,
    pub agents: Vec<AgentUse>,
    /// Uses per day over the last `USAGE_DAYS` days, oldest first, today last (UTC days);
    /// empty in lists that do not show usage.
    pub daily_uses: Vec<i64>,
    /// When it is revoked if not used before, where the site expires its type's unused keys.
    pub expires_unused_at: Option<NaiveDateTime>,
}

/// Days of the usage picture.
pub const USAGE_DAYS: i64 = 30;

impl KeyState {
    pub fn of(key: &KeyRow, now: NaiveDateTime) -> Self {
        if key.revoked_at.is_some() {
            KeyState::Revoked
        } else if key.valid_until.is_some_and(|v| v <= now) {
            KeyState::Expired
        } else {
            KeyState::Active
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Active => "active",
            KeyState::Expired => "expired",
            KeyState::Revoked => "revoked",
        }
    }
}

/// The site's switches: which services and key types are off.
pub(super) struct SiteSwitches {
    /// Service id → (name, enabled).
    services: HashMap<i64, (String, bool)>,
    types: HashMap<String, bool>,
}

impl SiteSwitches {
    pub(super) fn read(conn: &mut DbConn) -> DbResult<Self> {
        Ok(SiteSwitches {
            services: crate::db::services::all(conn)?.into_iter().map(|s| (s.id, (s.name, s.enabled))).collect(),
            types: crate::db::key_types::all(conn)?.into_iter().collect(),
        })
    }

    pub(super) fn type_enabled(&self, registry: &KeyTypeRegistry, key_type: &str) -> bool {
        self.types.get(key_type).copied().unwrap_or_else(|| registry.on_by_default(key_type))
    }
}

/// Builds the entries of `rows`, given what else a list read in the same trip.
struct EntryMaker<'a> {
    registry: &'a KeyTypeRegistry,
    switches: &'a SiteSwitches,
    usage: HashMap<i64, Vec<AgentUse>>,
    daily: HashMap<i64, Vec<i64>>,
    creators: HashMap<i64, String>,
    now: NaiveDateTime,
}

impl EntryMaker<'_> {
    fn entry(&mut self, k: KeyRow, owner: Option<(String, String)>) -> KeyEntry {
        let key_type = self.registry.get(&k.key_type);
        let service = k.service_id.and_then(|s| self.switches.services.get(&s));
        let service_off = service.is_some_and(|(_, on)| !on);
        let device_uuid = match k.device_id.as_deref() {
            Some(d) if k.key_type == crate::keys::PUSH_DEVICE => Some(d.to_owned()),
            Some(d) => app_device_uuid(d).map(str::to_owned),
            None => None,
        };
        KeyEntry {
            id: k.id,
            user_id: k.user_id,
            owner,
            type_label: key_type.map_or(k.key_type.clone(), |t| t.label.clone()),
            type_visible: key_type.is_some_and(|t| t.visible),
            disabled: !self.switches.type_enabled(self.registry, &k.key_type) || service_off,
            service: service.map(|(name, _)| name.clone()),
            service_id: k.service_id,
            service_off,
            function_scope: k.function_scope.as_deref().map(|f| f.split_whitespace().map(str::to_owned).collect()),
            state: KeyState::of(&k, self.now),
            created_at: k.created_at,
            created_by: k.created_by.filter(|c| *c != k.user_id).and_then(|c| self.creators.get(&c).cloned()),
            valid_until: k.valid_until,
            ip_restriction: k.ip_restriction,
            last_used_at: k.last_used_at,
            last_used_ip: k.last_used_ip,
            revoked_at: k.revoked_at,
            revoked_reason: k.revoked_reason,
            device_uuid,
            agents: self.usage.remove(&k.id).unwrap_or_default(),
            daily_uses: self.daily.remove(&k.id).unwrap_or_default(),
            expires_unused_at: None,
            key_type: k.key_type,
            name: k.name,
        }
    }
}

/// Reads, in the caller's trip, the usage, switches and issuers' names `rows` need.
fn maker<'a>(
    conn: &mut DbConn,
    registry: &'a KeyTypeRegistry,
    switches: &'a SiteSwitches,
    rows: &[&KeyRow],
    now: NaiveDateTime,
) -> DbResult<EntryMaker<'a>> {
    let ids: Vec<i64> = rows.iter().map(|k| k.id).collect();
    let usage = summarise(&crate::db::usage::summary_for_keys(conn, &ids)?);
    let today = crate::db::usage::day_of(now);
    let first_day = today - (USAGE_DAYS - 1);
    let mut daily: HashMap<i64, Vec<i64>> = HashMap::new();
    if !ids.is_empty() {
        for id in &ids {
            daily.insert(*id, vec![0; USAGE_DAYS as usize]);
        }
        for (key, day, hits) in crate::db::usage::daily_for_keys(conn, &ids, first_day..=today)? {
            if let Some(slot) = daily.get_mut(&key).and_then(|d| d.get_mut((day - first_day) as usize)) {
                *slot += hits;
            }
        }
    }
    let mut creators: Vec<i64> = rows.iter().filter_map(|k| k.created_by.filter(|c| *c != k.user_id)).collect();
    creators.sort_unstable();
    creators.dedup();
    let creators = crate::db::users::names_full(conn, &creators)?;
    Ok(EntryMaker { registry, switches, usage, daily, creators, now })
}

/// A person's own active keys, as their page lists them.
#[derive(Debug)]
pub struct OwnKeys {
    pub entries: Vec<KeyEntry>,
    /// All active keys of each type, listed or not.
    pub counts: HashMap<String, usize>,
    /// Types the site has switched off.
    pub types_off: HashSet<String>,
    /// Whether the person may open any admin page.
    pub has_admin_pages: bool,
    /// Whether the person may create personal access tokens.
    pub personal_tokens: bool,
    /// Signed-in clients (browsers, apps, devices) of the person, the asking session included.
    pub signed_in: usize,
    /// Keys used by a client, or from a network, new to them, still to be looked at.
    pub alerts: Vec<super::ClientAlert>,
}

/// Everything about one person, for an admin.
#[derive(Debug)]
pub struct PersonKeys {
    pub user: User,
    pub entries: Vec<KeyEntry>,
}

#[derive(Debug)]
pub struct KeyPage {
    pub entries: Vec<KeyEntry>,
    pub more: bool,
    /// How many keys the filter selects, up to `KEY_COUNT_CAP` (which means "at least").
    pub total: i64,
    /// Every service (id, name), for the filter.
    pub services: Vec<(i64, String)>,
}

#[derive(Debug)]
pub struct AuditPage {
    /// Each entry with its actor's and target's names.
    pub entries: Vec<(AuditEntry, String, String)>,
    pub more: bool,
    /// The names of the keys the entries are about, by key id.
    pub key_names: HashMap<i64, String>,
}

impl Core {
    /// A person's active keys of visible types: all of the type `all_of`, the newest
    /// `per_type` of each other type.
    pub async fn own_keys(&self, user_id: i64, per_type: i64, all_of: Option<&str>) -> CoreResult<OwnKeys> {
        // Uses recorded by this instance but not yet written belong on the page too.
        self.usage.settle(&self.db).await?;
        let (registry, now, all_of) = (self.registry.clone(), now(), all_of.map(str::to_owned));
        let capabilities = self.capabilities_of(user_id).await?;
        let has_admin_pages = capabilities.iter().any(|c| c.is_admin());
        let personal_tokens = self.may_create_personal_tokens_with(&capabilities);
        let mut own = self
            .db
            .read(move |conn| {
                let (keys, counts) = crate::db::keys::listed_for_user(conn, user_id, now, per_type, all_of.as_deref())?;
                let switches = SiteSwitches::read(conn)?;
                let visible: Vec<KeyRow> =
                    keys.into_iter().filter(|k| registry.get(&k.key_type).is_some_and(|t| t.visible)).collect();
                let mut maker = maker(conn, &registry, &switches, &visible.iter().collect::<Vec<_>>(), now)?;
                let entries = visible.into_iter().map(|k| maker.entry(k, None)).collect();
                let types_off =
                    registry.all().filter(|t| !switches.type_enabled(&registry, &t.id)).map(|t| t.id.clone()).collect();
                let counts: HashMap<String, usize> = counts.into_iter().map(|(t, n)| (t, n as usize)).collect();
                let signed_in = registry.sign_in_types().iter().filter_map(|t| counts.get(t)).sum();
                Ok(OwnKeys {
                    entries,
                    counts,
                    types_off,
                    has_admin_pages,
                    personal_tokens,
                    signed_in,
                    alerts: Vec::new(),
                })
            })
            .await
            .map_err(CoreError::from)
            .map(|mut own| {
                self.mark_unused_expiry(&mut own.entries);
                own
            })?;
        own.alerts = self.open_client_alerts(user_id).await?;
        Ok(own)
    }

    /// Says when each active key is revoked if it stays unused (types the site expires unused).
    fn mark_unused_expiry(&self, entries: &mut [KeyEntry]) {
        for e in entries.iter_mut().filter(|e| e.state == KeyState::Active) {
            e.expires_unused_at = self.expires_unused_at(&e.key_type, e.created_at, e.last_used_at);
        }
    }

    /// One person and every key they have had (hidden types and revoked keys too), newest first.
    pub async fn person_keys(&self, user_id: i64) -> CoreResult<PersonKeys> {
        self.usage.settle(&self.db).await?;
        let (registry, now) = (self.registry.clone(), now());
        self.db
            .read(move |conn| {
                let Some(user) = crate::db::users::find(conn, user_id)? else { return Ok(None) };
                let filter = KeyFilter { user_id: Some(user_id), ..Default::default() };
                let listed = key_search::search(conn, &filter, KeySort::CreatedDesc, now, 0, 1000)?;
                let switches = SiteSwitches::read(conn)?;
                let rows: Vec<KeyRow> = listed.into_iter().map(|l| l.key).collect();
                let mut maker = maker(conn, &registry, &switches, &rows.iter().collect::<Vec<_>>(), now)?;
                let entries = rows.into_iter().map(|k| maker.entry(k, None)).collect();
                Ok(Some(PersonKeys { user, entries }))
            })
            .await?
            .ok_or(CoreError::NotFound)
            .map(|mut person| {
                self.mark_unused_expiry(&mut person.entries);
                person
            })
    }

    /// Every key on the site that the filter selects, one page of them.
    pub async fn search_keys(
        &self,
        filter: KeyFilter,
        sort: KeySort,
        page: i64,
        page_size: i64,
    ) -> CoreResult<KeyPage> {
        let (registry, now) = (self.registry.clone(), now());
        self.db
            .read(move |conn| {
                let offset = (page - 1) * page_size;
                let mut found = key_search::search(conn, &filter, sort, now, offset, page_size + 1)?;
                let more = found.len() as i64 > page_size;
                // A first page that holds everything is its own count; otherwise count, capped.
                let total = if offset == 0 && !more {
                    found.len() as i64
                } else {
                    key_search::count_capped(conn, &filter, now, key_search::KEY_COUNT_CAP)?
                };
                found.truncate(page_size as usize);
                let switches = SiteSwitches::read(conn)?;
                let mut services: Vec<(i64, String)> =
                    switches.services.iter().map(|(id, (name, _))| (*id, name.clone())).collect();
                services.sort();
                let entries = listed_entries(conn, &registry, &switches, found, now, false)?;
                Ok(KeyPage { entries, more, total, services })
            })
            .await
            .map_err(CoreError::from)
            .map(|mut page| {
                self.mark_unused_expiry(&mut page.entries);
                page
            })
    }

    /// The next `limit` keys the filter selects after key `after`, in id order (for export).
    pub async fn keys_after(&self, filter: KeyFilter, after: i64, limit: i64) -> CoreResult<Vec<KeyEntry>> {
        let (registry, now) = (self.registry.clone(), now());
        self.db
            .read(move |conn| {
                let found = key_search::search_after(conn, &filter, now, after, limit)?;
                let switches = SiteSwitches::read(conn)?;
                listed_entries(conn, &registry, &switches, found, now, true)
            })
            .await
            .map_err(CoreError::from)
    }

    /// One page of the audit trail, with names.
    pub async fn audit(&self, filter: AuditFilter, page: i64, page_size: i64) -> CoreResult<AuditPage> {
        self.db
            .read(move |conn| {
                let mut entries = crate::db::audit::list(conn, &filter, (page - 1) * page_size, page_size + 1)?;
                let more = entries.len() as i64 > page_size;
                entries.truncate(page_size as usize);
                let mut ids: Vec<i64> = entries.iter().flat_map(|e| [e.actor_id, e.target_user_id]).flatten().collect();
                ids.sort_unstable();
                ids.dedup();
                let names = crate::db::users::names(conn, &ids)?;
                let mut key_ids: Vec<i64> = entries.iter().filter_map(|e| e.key_id).collect();
                key_ids.sort_unstable();
                key_ids.dedup();
                let key_names = crate::db::audit::key_names(conn, &key_ids)?;
                let name = |id: Option<i64>| {
                    id.map(|i| names.get(&i).cloned().unwrap_or_else(|| format!("#{i}"))).unwrap_or_default()
                };
                let entries = entries
                    .into_iter()
                    .map(|e| {
                        let (actor, target) = (name(e.actor_id), name(e.target_user_id));
                        (e, actor, target)
                    })
                    .collect();
                Ok(AuditPage { entries, more, key_names })
            })
            .await
            .map_err(CoreError::from)
    }
}

/// Entries of keys listed across people; usage only where `without_usage` is false.
fn listed_entries(
    conn: &mut DbConn,
    registry: &KeyTypeRegistry,
    switches: &SiteSwitches,
    found: Vec<ListedKey>,
    now: NaiveDateTime,
    without_usage: bool,
) -> DbResult<Vec<KeyEntry>> {
    let rows: Vec<&KeyRow> = if without_usage { Vec::new() } else { found.iter().map(|l| &l.key).collect() };
    let mut maker = maker(conn, registry, switches, &rows, now)?;
    Ok(found.into_iter().map(|l| maker.entry(l.key, Some((l.username, l.fullname)))).collect())
}

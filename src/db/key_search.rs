//! The admin's view of every key: filtered, sorted and paged in the database, over indexes,
//! never loading the whole table.

use super::models::KeyRow;
use super::schema::{key_last_use, user_keys, users};
use super::{DbConn, DbResult};
use chrono::{Duration, NaiveDateTime};
use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::sql_types::Timestamp;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyState {
    Active,
    Expired,
    Revoked,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeySort {
    #[default]
    LastUsedDesc,
    LastUsedAsc,
    CreatedDesc,
    CreatedAsc,
}

#[derive(Clone, Debug, Default)]
pub struct KeyFilter {
    /// Part of a username, full name or email.
    pub user: Option<String>,
    pub user_id: Option<i64>,
    pub key_type: Option<String>,
    pub service_id: Option<i64>,
    pub state: Option<KeyState>,
    pub unused_days: Option<i64>,
    pub never_used: bool,
    /// Last-use address range, as `ip_hex` bounds.
    pub last_ip_range: Option<(String, String)>,
    /// Only these keys (for a confirmation that names what it will revoke).
    pub key_ids: Option<Vec<i64>>,
    /// Active keys of these types unused (last used, or made if never used) before the type's
    /// time: those the unused-key expiry revokes by then. Empty selects nothing.
    pub unused_expiry: Option<Vec<(String, NaiveDateTime)>>,
}

#[derive(Clone, Debug)]
pub struct ListedKey {
    pub key: KeyRow,
    pub username: String,
    pub fullname: String,
}

fn like_pattern(s: &str) -> String {
    let escaped = super::storable(s).replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
    format!("%{}%", escaped.to_lowercase())
}

type Boxed<'a> = diesel::dsl::IntoBoxed<
    'a,
    diesel::dsl::InnerJoin<user_keys::table, key_last_use::table>,
    <DbConn as diesel::Connection>::Backend,
>;

fn filtered<'a>(filter: &'a KeyFilter, now: NaiveDateTime) -> Boxed<'a> {
    let mut q = user_keys::table.inner_join(key_last_use::table).into_boxed();
    if let Some(text) = filter.user.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
        let pattern = like_pattern(text);
        let matching = users::table
            .filter(
                diesel::dsl::sql::<diesel::sql_types::Bool>("LOWER(users.username) LIKE ")
                    .bind::<diesel::sql_types::Text, _>(pattern.clone())
                    .sql(" ESCAPE '\\' OR LOWER(users.fullname) LIKE ")
                    .bind::<diesel::sql_types::Text, _>(pattern.clone())
                    .sql(" ESCAPE '\\' OR LOWER(users.email) LIKE ")
                    .bind::<diesel::sql_types::Text, _>(pattern)
                    .sql(" ESCAPE '\\'"),
            )
            .select(users::id);
        q = q.filter(user_keys::user_id.eq_any(matching));
    }
    if let Some(id) = filter.user_id {
        q = q.filter(user_keys::user_id.eq(id));
    }
    if let Some(ids) = &filter.key_ids {
        q = q.filter(user_keys::id.eq_any(ids.clone()));
    }
    if let Some(t) = &filter.key_type {
        q = q.filter(user_keys::key_type.eq(t.clone()));
    }
    if let Some(s) = filter.service_id {
        q = q.filter(user_keys::service_id.eq(s));
    }
    q = match filter.state {
        None => q,
        Some(KeyState::Revoked) => q.filter(user_keys::revoked_at.is_not_null()),
        Some(KeyState::Active) => q.filter(super::keys::is_active(now)),
        Some(KeyState::Expired) => q.filter(user_keys::revoked_at.is_null()).filter(user_keys::valid_until.le(now)),
    };
    if filter.never_used {
        q = q.filter(key_last_use::last_used_at.is_null());
    }
    if let Some(days) = filter.unused_days {
        let since = now - Duration::days(days.clamp(0, 36500));
        q = q.filter(
            key_last_use::last_used_at
                .lt(since)
                .or(key_last_use::last_used_at.is_null().and(user_keys::created_at.lt(since))),
        );
    }
    if let Some(types) = &filter.unused_expiry {
        q = q.filter(super::keys::is_active(now)).filter(unused_before(types));
    }
    if let Some((lo, hi)) = &filter.last_ip_range {
        q = q.filter(key_last_use::last_used_ip_hex.between(lo.clone(), hi.clone()));
    }
    q
}

type Condition = Box<
    dyn BoxableExpression<
        diesel::dsl::InnerJoinQuerySource<user_keys::table, key_last_use::table>,
        <DbConn as diesel::Connection>::Backend,
        SqlType = diesel::sql_types::Nullable<diesel::sql_types::Bool>,
    >,
>;

/// Keys of one of the types whose idle time began before the type's time: per type, a range
/// of key_last_use_order (used keys) or of user_keys_unrevoked_type_created (never used).
fn unused_before(types: &[(String, NaiveDateTime)]) -> Condition {
    let mut condition: Condition = Box::new(user_keys::id.lt(0).nullable());
    for (key_type, before) in types {
        let idle = key_last_use::last_used_at
            .lt(*before)
            .or(key_last_use::last_used_at.is_null().and(user_keys::created_at.lt(*before)).nullable());
        condition = Box::new(condition.or(user_keys::key_type.eq(key_type.clone()).nullable().and(idle)));
    }
    condition
}

/// One page of keys, with their owners. Asks for `limit + 1` so the caller knows if there is more.
pub fn search(
    conn: &mut DbConn,
    filter: &KeyFilter,
    sort: KeySort,
    now: NaiveDateTime,
    offset: i64,
    limit: i64,
) -> DbResult<Vec<ListedKey>> {
    let q = filtered(filter, now);
    // The same ORDER BY text on both backends; NULLS LAST keeps never-used keys at the end on
    // PostgreSQL as SQLite does naturally.
    let q = match sort {
        KeySort::LastUsedDesc => {
            q.order(sql::<Timestamp>("key_last_use.last_used_at DESC NULLS LAST, key_last_use.key_id DESC"))
        }
        KeySort::LastUsedAsc => {
            q.order(sql::<Timestamp>("key_last_use.last_used_at ASC NULLS FIRST, key_last_use.key_id ASC"))
        }
        KeySort::CreatedDesc => q.order((user_keys::created_at.desc(), user_keys::id.desc())),
        KeySort::CreatedAsc => q.order((user_keys::created_at.asc(), user_keys::id.asc())),
    };
    let keys: Vec<KeyRow> =
        q.offset(offset.max(0)).limit(limit.clamp(1, 1000)).select(KeyRow::as_select()).load(conn)?;
    attach_owners(conn, keys)
}

/// The all-keys list counts matching keys up to this many, so a filter over millions of keys
/// costs a bounded read: reaching it is shown as "more than 10,000".
pub const KEY_COUNT_CAP: i64 = 10_001;

/// How many keys the filter selects, counting no further than `cap` (a count of millions of
/// rows would read them all): `cap` or more means "at least `cap`". Reads only ids.
pub fn count_capped(conn: &mut DbConn, filter: &KeyFilter, now: NaiveDateTime, cap: i64) -> DbResult<i64> {
    let ids: Vec<i64> = filtered(filter, now).select(user_keys::id).limit(cap.max(1)).load(conn)?;
    Ok(ids.len() as i64)
}

/// Keys after `after_id` in id order (for streaming exports).
pub fn search_after(
    conn: &mut DbConn,
    filter: &KeyFilter,
    now: NaiveDateTime,
    after_id: i64,
    limit: i64,
) -> DbResult<Vec<ListedKey>> {
    let keys: Vec<KeyRow> = filtered(filter, now)
        .filter(user_keys::id.gt(after_id))
        .order(user_keys::id.asc())
        .limit(limit)
        .select(KeyRow::as_select())
        .load(conn)?;
    attach_owners(conn, keys)
}

fn attach_owners(conn: &mut DbConn, keys: Vec<KeyRow>) -> DbResult<Vec<ListedKey>> {
    let mut ids: Vec<i64> = keys.iter().map(|k| k.user_id).collect();
    ids.sort_unstable();
    ids.dedup();
    let owners: std::collections::HashMap<i64, (String, String)> = users::table
        .filter(users::id.eq_any(&ids))
        .select((users::id, users::username, users::fullname))
        .load::<(i64, String, String)>(conn)?
        .into_iter()
        .map(|(id, u, f)| (id, (u, f)))
        .collect();
    Ok(keys
        .into_iter()
        .map(|key| {
            let (username, fullname) = owners.get(&key.user_id).cloned().unwrap_or_default();
            ListedKey { key, username, fullname }
        })
        .collect())
}

//! Keys unused too long, found over indexes a batch at a time: keys never used by their type
//! and age (user_keys_unrevoked_type_created, which holds no revoked key), keys used before by
//! their last use (key_last_use_order). Each walk takes a cursor, so a job that keeps it reads
//! each key once as it ages past the limit rather than every old key on every run.

use super::schema::{key_last_use, user_keys};
use super::{DbConn, DbResult};
use chrono::NaiveDateTime;
use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::sql_types::Timestamp;

/// A place in a walk: (time, key id); the walk goes on after it.
pub type Cursor = (NaiveDateTime, i64);

/// The start of a walk (a time both databases store; no key is older).
pub fn start() -> Cursor {
    (chrono::DateTime::UNIX_EPOCH.naive_utc(), 0)
}

/// Active keys of `key_type` made before `before` and never used, after `after` in (created,
/// id) order; at most `limit` keys looked at. Returns the stale ones and where the walk got to
/// (`None` once it has reached `before`).
pub fn never_used(
    conn: &mut DbConn,
    key_type: &str,
    before: NaiveDateTime,
    after: Cursor,
    now: NaiveDateTime,
    limit: i64,
) -> DbResult<(Vec<(i64, i64)>, Option<Cursor>)> {
    let rows: Vec<(i64, i64, NaiveDateTime, Option<NaiveDateTime>, Option<NaiveDateTime>)> = user_keys::table
        .inner_join(key_last_use::table)
        .filter(user_keys::key_type.eq(key_type))
        .filter(user_keys::revoked_at.is_null())
        .filter(user_keys::created_at.lt(before))
        .filter(user_keys::created_at.gt(after.0).or(user_keys::created_at.eq(after.0).and(user_keys::id.gt(after.1))))
        .order((user_keys::created_at, user_keys::id))
        .limit(limit)
        .select((
            user_keys::id,
            user_keys::user_id,
            user_keys::created_at,
            user_keys::valid_until,
            key_last_use::last_used_at,
        ))
        .load(conn)?;
    let reached = (rows.len() as i64 == limit).then(|| rows.last().map(|r| (r.2, r.0))).flatten();
    let stale = rows
        .into_iter()
        .filter(|(_, _, _, valid_until, last_used)| last_used.is_none() && valid_until.is_none_or(|v| v > now))
        .map(|(id, user_id, ..)| (id, user_id))
        .collect();
    Ok((stale, reached))
}

/// Active keys of `key_type` last used before `before`, after `after` in (last use, id) order,
/// at most `limit`. Returns them and where the walk got to (`None` once it has reached `before`).
pub fn last_used_before(
    conn: &mut DbConn,
    key_type: &str,
    before: NaiveDateTime,
    after: Cursor,
    now: NaiveDateTime,
    limit: i64,
) -> DbResult<(Vec<(i64, i64)>, Option<Cursor>)> {
    let rows: Vec<(i64, i64, Option<NaiveDateTime>)> = user_keys::table
        .inner_join(key_last_use::table)
        .filter(key_last_use::last_used_at.lt(before))
        .filter(
            key_last_use::last_used_at
                .gt(after.0)
                .or(key_last_use::last_used_at.eq(after.0).and(key_last_use::key_id.gt(after.1))),
        )
        .filter(user_keys::key_type.eq(key_type))
        .filter(super::keys::is_active(now))
        // The text of the admin list's sort, which PostgreSQL reads off its index backwards.
        .order(sql::<Timestamp>("key_last_use.last_used_at ASC NULLS FIRST, key_last_use.key_id ASC"))
        .limit(limit)
        .select((user_keys::id, user_keys::user_id, key_last_use::last_used_at))
        .load(conn)?;
    let reached = (rows.len() as i64 == limit).then(|| rows.last().and_then(|r| Some((r.2?, r.0)))).flatten();
    Ok((rows.into_iter().map(|(id, user_id, _)| (id, user_id)).collect(), reached))
}

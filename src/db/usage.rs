//! The usage log: (key, user agent, IP) → first seen, last seen, hits.

use super::models::UsageRow;
use super::schema::{key_usage, user_keys};
use super::{DbConn, DbResult};
use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text, Timestamp};

/// One aggregated row of uses to add.
#[derive(Clone, Debug)]
pub struct UsageDelta {
    pub key_id: i64,
    pub user_agent: String,
    pub ip: String,
    pub first_seen: NaiveDateTime,
    pub last_seen: NaiveDateTime,
    pub hits: i64,
}

// The same statement on both backends; only the placeholder syntax differs.
const UPSERT_SQLITE: &str = "INSERT INTO key_usage (key_id, user_agent, ip, first_seen, last_seen, hits) \
     VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (key_id, user_agent, ip) DO UPDATE SET \
     hits = key_usage.hits + excluded.hits, \
     last_seen = CASE WHEN excluded.last_seen > key_usage.last_seen THEN excluded.last_seen ELSE key_usage.last_seen END";
const UPSERT_POSTGRES: &str = "INSERT INTO key_usage (key_id, user_agent, ip, first_seen, last_seen, hits) \
     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (key_id, user_agent, ip) DO UPDATE SET \
     hits = key_usage.hits + excluded.hits, \
     last_seen = GREATEST(excluded.last_seen, key_usage.last_seen)";

/// Adds the deltas (call inside a transaction). Atomic increments, so concurrent writers from
/// several instances add up exactly.
pub fn apply(conn: &mut DbConn, deltas: &[UsageDelta]) -> DbResult<()> {
    for d in deltas {
        let sql = match conn {
            DbConn::Sqlite(_) => UPSERT_SQLITE,
            DbConn::Pg(_) => UPSERT_POSTGRES,
        };
        diesel::sql_query(sql)
            .bind::<BigInt, _>(d.key_id)
            .bind::<Text, _>(&d.user_agent)
            .bind::<Text, _>(&d.ip)
            .bind::<Timestamp, _>(d.first_seen)
            .bind::<Timestamp, _>(d.last_seen)
            .bind::<BigInt, _>(d.hits)
            .execute(conn)?;
    }
    Ok(())
}

/// Moves a key's "last used" forward (never back, whichever instance flushes first).
pub fn mark_last_used(conn: &mut DbConn, key_id: i64, at: NaiveDateTime, ip: &str) -> DbResult<()> {
    diesel::update(
        user_keys::table
            .find(key_id)
            .filter(user_keys::last_used_at.is_null().or(user_keys::last_used_at.lt(at))),
    )
    .set((
        user_keys::last_used_at.eq(at),
        user_keys::last_used_ip.eq(ip),
        user_keys::last_used_ip_hex.eq(ip.parse().ok().map(crate::domain::ip_restriction::ip_hex)),
    ))
    .execute(conn)?;
    Ok(())
}

pub fn for_keys(conn: &mut DbConn, key_ids: &[i64]) -> DbResult<Vec<UsageRow>> {
    let mut rows = Vec::new();
    // Bounded chunks keep each statement under SQLite's bind-parameter limit.
    for chunk in key_ids.chunks(500) {
        rows.extend(
            key_usage::table
                .filter(key_usage::key_id.eq_any(chunk))
                .order(key_usage::last_seen.desc())
                .select(UsageRow::as_select())
                .load(conn)?,
        );
    }
    Ok(rows)
}

// Per key and agent: totals, and the address of the latest use (joined back by its time).
const SUMMARY_SQL: &str = "SELECT u.key_id, u.user_agent, u.ip, g.first_seen, g.last_seen, g.hits \
     FROM (SELECT key_id, user_agent, MIN(first_seen) AS first_seen, MAX(last_seen) AS last_seen, \
                  CAST(SUM(hits) AS BIGINT) AS hits \
           FROM key_usage \
           WHERE key_id IN (SELECT id FROM user_keys WHERE user_id = $1 AND revoked_at IS NULL) \
           GROUP BY key_id, user_agent) g \
     JOIN key_usage u ON u.key_id = g.key_id AND u.user_agent = g.user_agent AND u.last_seen = g.last_seen";

/// The usage of a user's unrevoked keys, aggregated in the database to one row per key and
/// user agent (with the latest address), so a heavy user's page reads thousands of rows, not
/// hundreds of thousands.
pub fn summary_for_user(conn: &mut DbConn, user_id: i64) -> DbResult<Vec<UsageRow>> {
    let sql = match conn {
        DbConn::Sqlite(_) => SUMMARY_SQL.replace("$1", "?"),
        DbConn::Pg(_) => SUMMARY_SQL.to_owned(),
    };
    let mut rows: Vec<UsageRow> = diesel::sql_query(sql).bind::<BigInt, _>(user_id).load(conn)?;
    // Two addresses used at the very same instant: keep one.
    rows.sort_by(|a, b| (a.key_id, &a.user_agent, &a.ip).cmp(&(b.key_id, &b.user_agent, &b.ip)));
    rows.dedup_by(|a, b| a.key_id == b.key_id && a.user_agent == b.user_agent);
    Ok(rows)
}

pub fn total_hits(conn: &mut DbConn, key_id: i64) -> DbResult<i64> {
    // Summed here: SUM(BIGINT) is NUMERIC on PostgreSQL but INTEGER on SQLite.
    let hits: Vec<i64> = key_usage::table.filter(key_usage::key_id.eq(key_id)).select(key_usage::hits).load(conn)?;
    Ok(hits.iter().sum())
}

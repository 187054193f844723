//! The usage log: (key, user agent, IP) → first seen, last seen, hits.

use super::models::UsageRow;
use super::schema::key_usage;
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

/// Rows per statement: a second's worth of uses from thousands of clients is a few statements.
const ROWS_PER_STATEMENT: usize = 500;

type Backend = <DbConn as diesel::Connection>::Backend;

/// `(?, ?, ?), (?, ?, ?)` on SQLite, `($1, $2, $3), ($4, $5, $6)` on PostgreSQL.
fn placeholders(conn: &DbConn, rows: usize, columns: usize) -> String {
    let mut n = 0;
    let mut next = || {
        n += 1;
        match conn {
            DbConn::Sqlite(_) => "?".to_owned(),
            DbConn::Pg(_) => format!("${n}"),
        }
    };
    (0..rows)
        .map(|_| format!("({})", (0..columns).map(|_| next()).collect::<Vec<_>>().join(", ")))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Adds the deltas (call inside a transaction) as atomic increments, so concurrent writers
/// from several instances add up exactly. Each (key, agent, IP) appears once in `deltas`.
pub fn apply(conn: &mut DbConn, deltas: &[UsageDelta]) -> DbResult<()> {
    for chunk in deltas.chunks(ROWS_PER_STATEMENT) {
        let latest = match conn {
            DbConn::Sqlite(_) => "CASE WHEN excluded.last_seen > key_usage.last_seen THEN excluded.last_seen ELSE key_usage.last_seen END",
            DbConn::Pg(_) => "GREATEST(excluded.last_seen, key_usage.last_seen)",
        };
        let sql = format!(
            "INSERT INTO key_usage (key_id, user_agent, ip, first_seen, last_seen, hits) VALUES {} \
             ON CONFLICT (key_id, user_agent, ip) DO UPDATE SET hits = key_usage.hits + excluded.hits, last_seen = {latest}",
            placeholders(conn, chunk.len(), 6)
        );
        let mut query = diesel::sql_query(sql).into_boxed::<Backend>();
        for d in chunk {
            query = query
                .bind::<BigInt, _>(d.key_id)
                .bind::<Text, _>(d.user_agent.clone())
                .bind::<Text, _>(d.ip.clone())
                .bind::<Timestamp, _>(d.first_seen)
                .bind::<Timestamp, _>(d.last_seen)
                .bind::<BigInt, _>(d.hits);
        }
        query.execute(conn)?;
    }
    Ok(())
}

/// Moves each key's "last used" forward (never back, whichever instance flushes first).
pub fn mark_last_used(conn: &mut DbConn, uses: &[(i64, NaiveDateTime, String)]) -> DbResult<()> {
    for chunk in uses.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "UPDATE user_keys SET last_used_at = v.column2, last_used_ip = v.column3, last_used_ip_hex = v.column4 \
             FROM (VALUES {}) AS v \
             WHERE user_keys.id = v.column1 AND (user_keys.last_used_at IS NULL OR user_keys.last_used_at < v.column2)",
            placeholders(conn, chunk.len(), 4)
        );
        let mut query = diesel::sql_query(sql).into_boxed::<Backend>();
        for (key_id, at, ip) in chunk {
            let hex = ip.parse().ok().map(crate::domain::ip_restriction::ip_hex);
            query = query
                .bind::<BigInt, _>(*key_id)
                .bind::<Timestamp, _>(*at)
                .bind::<Text, _>(ip.clone())
                .bind::<diesel::sql_types::Nullable<Text>, _>(hex);
        }
        query.execute(conn)?;
    }
    Ok(())
}

/// Usage of these keys aggregated in the database to one row per key and user agent, with the
/// address of the latest use, so a page reads one row per line it shows rather than every
/// (agent, address) pair ever seen.
pub fn summary_for_keys(conn: &mut DbConn, key_ids: &[i64]) -> DbResult<Vec<UsageRow>> {
    let mut rows: Vec<UsageRow> = Vec::new();
    for chunk in key_ids.chunks(500) {
        // The ids are integers read from the database, written into the statement as numbers.
        let ids = chunk.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
        let sql = format!(
            "SELECT u.key_id, u.user_agent, u.ip, g.first_seen, g.last_seen, g.hits \
             FROM (SELECT key_id, user_agent, MIN(first_seen) AS first_seen, MAX(last_seen) AS last_seen, \
                          CAST(SUM(hits) AS BIGINT) AS hits \
                   FROM key_usage WHERE key_id IN ({ids}) GROUP BY key_id, user_agent) g \
             JOIN key_usage u ON u.key_id = g.key_id AND u.user_agent = g.user_agent AND u.last_seen = g.last_seen"
        );
        rows.extend(diesel::sql_query(sql).load::<UsageRow>(conn)?);
    }
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

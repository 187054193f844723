//! The usage log: (key, user agent, IP) → first seen, last seen, hits.

use super::models::UsageRow;
use super::schema::{key_usage, key_usage_pending, user_agents};
use super::{DbConn, DbResult};
use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text, Timestamp};
use std::collections::HashMap;

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

/// The numbers of these user agents, adding the ones not seen before (safe against another
/// instance adding the same agent at the same moment).
pub fn agent_ids(conn: &mut DbConn, agents: &[&str]) -> DbResult<HashMap<String, i64>> {
    let mut ids = HashMap::with_capacity(agents.len());
    for chunk in agents.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "INSERT INTO user_agents (agent) VALUES {} ON CONFLICT (agent) DO NOTHING",
            placeholders(conn, chunk.len(), 1)
        );
        let mut insert = diesel::sql_query(sql).into_boxed::<Backend>();
        for agent in chunk {
            insert = insert.bind::<Text, _>(*agent);
        }
        insert.execute(conn)?;
        let found: Vec<(i64, String)> = user_agents::table
            .filter(user_agents::agent.eq_any(chunk))
            .select((user_agents::id, user_agents::agent))
            .load(conn)?;
        ids.extend(found.into_iter().map(|(id, agent)| (agent, id)));
    }
    Ok(ids)
}

/// Appends uses to the pending log (call inside a transaction). Appending touches only the
/// log's last pages, so it stays cheap however many keys the uses are spread over.
pub fn append(conn: &mut DbConn, deltas: &[UsageDelta], agent_ids: &HashMap<String, i64>) -> DbResult<usize> {
    let rows: Vec<(&UsageDelta, i64)> =
        deltas.iter().filter_map(|d| agent_ids.get(&d.user_agent).map(|id| (d, *id))).collect();
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "INSERT INTO key_usage_pending (key_id, agent_id, ip, first_seen, last_seen, hits) VALUES {}",
            placeholders(conn, chunk.len(), 6)
        );
        let mut query = diesel::sql_query(sql).into_boxed::<Backend>();
        for (d, agent_id) in chunk {
            query = query
                .bind::<BigInt, _>(d.key_id)
                .bind::<BigInt, _>(*agent_id)
                .bind::<Text, _>(d.ip.as_str())
                .bind::<Timestamp, _>(d.first_seen)
                .bind::<Timestamp, _>(d.last_seen)
                .bind::<BigInt, _>(d.hits);
        }
        query.execute(conn)?;
    }
    Ok(rows.len())
}

/// The lowest and highest id in the pending log, if it holds anything.
pub fn pending_span(conn: &mut DbConn) -> DbResult<Option<(i64, i64)>> {
    let (low, high): (Option<i64>, Option<i64>) = key_usage_pending::table
        .select((diesel::dsl::min(key_usage_pending::id), diesel::dsl::max(key_usage_pending::id)))
        .first(conn)?;
    Ok(low.zip(high))
}

/// Folds the pending uses with ids up to `up_to` into key_usage, aggregated and in key order,
/// and removes them from the log, in one transaction: each use is counted exactly once, even
/// when several instances fold at once. Uses of keys deleted meanwhile are dropped. Returns
/// false when another instance is folding (PostgreSQL), so this one can leave it. Call inside a
/// transaction.
pub fn fold_pending(conn: &mut DbConn, up_to: i64) -> DbResult<bool> {
    {
        match conn {
            DbConn::Sqlite(_) => {
                diesel::sql_query(
                    "INSERT INTO key_usage (key_id, agent_id, ip, first_seen, last_seen, hits) \
                     SELECT p.key_id, p.agent_id, p.ip, MIN(p.first_seen), MAX(p.last_seen), SUM(p.hits) \
                     FROM key_usage_pending p \
                     WHERE p.id <= ? AND EXISTS (SELECT 1 FROM user_keys k WHERE k.id = p.key_id) \
                     GROUP BY p.key_id, p.agent_id, p.ip ORDER BY p.key_id, p.agent_id, p.ip \
                     ON CONFLICT (key_id, agent_id, ip) DO UPDATE SET hits = key_usage.hits + excluded.hits, \
                       first_seen = MIN(key_usage.first_seen, excluded.first_seen), \
                       last_seen = MAX(key_usage.last_seen, excluded.last_seen)",
                )
                .bind::<BigInt, _>(up_to)
                .execute(conn)?;
                diesel::delete(key_usage_pending::table.filter(key_usage_pending::id.le(up_to))).execute(conn)?;
            }
            DbConn::Pg(_) => {
                #[derive(QueryableByName)]
                struct Locked {
                    #[diesel(sql_type = diesel::sql_types::Bool)]
                    locked: bool,
                }
                let lock: Locked = diesel::sql_query("SELECT pg_try_advisory_xact_lock(7391) AS locked").get_result(conn)?;
                if !lock.locked {
                    return Ok(false);
                }
                // The rows folded are exactly the rows deleted, whatever commits meanwhile.
                diesel::sql_query(
                    "WITH moved AS (DELETE FROM key_usage_pending WHERE id <= $1 \
                                    RETURNING key_id, agent_id, ip, first_seen, last_seen, hits) \
                     INSERT INTO key_usage (key_id, agent_id, ip, first_seen, last_seen, hits) \
                     SELECT m.key_id, m.agent_id, m.ip, MIN(m.first_seen), MAX(m.last_seen), SUM(m.hits) \
                     FROM moved m WHERE EXISTS (SELECT 1 FROM user_keys k WHERE k.id = m.key_id) \
                     GROUP BY m.key_id, m.agent_id, m.ip ORDER BY m.key_id, m.agent_id, m.ip \
                     ON CONFLICT (key_id, agent_id, ip) DO UPDATE SET hits = key_usage.hits + excluded.hits, \
                       first_seen = LEAST(key_usage.first_seen, excluded.first_seen), \
                       last_seen = GREATEST(key_usage.last_seen, excluded.last_seen)",
                )
                .bind::<BigInt, _>(up_to)
                .execute(conn)?;
            }
        }
        Ok(true)
    }
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
/// (agent, address) pair ever seen. Uses still in the pending log are not in it yet.
pub fn summary_for_keys(conn: &mut DbConn, key_ids: &[i64]) -> DbResult<Vec<UsageRow>> {
    let mut rows: Vec<UsageRow> = Vec::new();
    for chunk in key_ids.chunks(500) {
        // The ids are integers read from the database, written into the statement as numbers.
        let ids = chunk.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
        let sql = format!(
            "SELECT u.key_id, a.agent AS user_agent, u.ip, g.first_seen, g.last_seen, g.hits \
             FROM (SELECT key_id, agent_id, MIN(first_seen) AS first_seen, MAX(last_seen) AS last_seen, \
                          CAST(SUM(hits) AS BIGINT) AS hits \
                   FROM key_usage WHERE key_id IN ({ids}) GROUP BY key_id, agent_id) g \
             JOIN key_usage u ON u.key_id = g.key_id AND u.agent_id = g.agent_id AND u.last_seen = g.last_seen \
             JOIN user_agents a ON a.id = g.agent_id"
        );
        rows.extend(diesel::sql_query(sql).load::<UsageRow>(conn)?);
    }
    // Two addresses used at the very same instant: keep one.
    rows.sort_by(|a, b| (a.key_id, &a.user_agent, &a.ip).cmp(&(b.key_id, &b.user_agent, &b.ip)));
    rows.dedup_by(|a, b| a.key_id == b.key_id && a.user_agent == b.user_agent);
    Ok(rows)
}

/// Every use recorded for a key, folded or still pending.
pub fn total_hits(conn: &mut DbConn, key_id: i64) -> DbResult<i64> {
    // Summed here: SUM(BIGINT) is NUMERIC on PostgreSQL but INTEGER on SQLite.
    let folded: Vec<i64> = key_usage::table.filter(key_usage::key_id.eq(key_id)).select(key_usage::hits).load(conn)?;
    let pending: Vec<i64> =
        key_usage_pending::table.filter(key_usage_pending::key_id.eq(key_id)).select(key_usage_pending::hits).load(conn)?;
    Ok(folded.iter().chain(&pending).sum())
}

/// Every use recorded for any key, folded or still pending.
pub fn grand_total(conn: &mut DbConn) -> DbResult<i64> {
    #[derive(QueryableByName)]
    struct Total {
        #[diesel(sql_type = BigInt)]
        total: i64,
    }
    let total: Total = diesel::sql_query(
        "SELECT CAST(COALESCE((SELECT SUM(hits) FROM key_usage), 0) + \
                     COALESCE((SELECT SUM(hits) FROM key_usage_pending), 0) AS BIGINT) AS total",
    )
    .get_result(conn)?;
    Ok(total.total)
}

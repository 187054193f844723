//! The usage log: (key, user agent, IP) → first seen, last seen, hits.

use super::models::UsageRow;
use super::schema::{
    key_daily_uses, key_usage, key_usage_merged, key_usage_merged_uses, key_usage_pending, user_agents,
};
use super::{DbConn, DbResult};
use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text, Timestamp};
use std::collections::HashMap;
use std::net::IpAddr;
use std::ops::RangeInclusive;

/// Uses of a key by one agent from one address: a pending log record, or a row of key_usage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyUse {
    pub key_id: i64,
    pub agent_id: i64,
    pub ip: IpAddr,
    pub first_seen: NaiveDateTime,
    pub last_seen: NaiveDateTime,
    pub hits: i64,
}

impl KeyUse {
    /// The usage row these uses add to: (key, agent, address).
    pub fn row(&self) -> (i64, i64, IpAddr) {
        (self.key_id, self.agent_id, self.ip)
    }
}

/// A packed record: key, agent, address (16 bytes, IPv4 mapped), first and last use (µs since
/// the epoch) and hits, little-endian.
pub const RECORD: usize = 8 + 8 + 16 + 8 + 8 + 8;

/// A `KeyUse` as a packed record holds it, unpacked: 56 bytes where a `KeyUse` takes 72, which
/// a fold's merge holds by the hundred thousand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UseRecord {
    pub key_id: i64,
    pub agent_id: i64,
    pub ip: [u8; 16],
    pub first_us: i64,
    pub last_us: i64,
    pub hits: i64,
}

impl UseRecord {
    /// The usage row these uses add to, as `KeyUse::row`: key first.
    pub fn row(&self) -> (i64, i64, [u8; 16]) {
        (self.key_id, self.agent_id, self.ip)
    }
}

impl From<&KeyUse> for UseRecord {
    fn from(u: &KeyUse) -> Self {
        let ip = match u.ip {
            IpAddr::V4(v4) => v4.to_ipv6_mapped(),
            IpAddr::V6(v6) => v6,
        };
        UseRecord {
            key_id: u.key_id,
            agent_id: u.agent_id,
            ip: ip.octets(),
            first_us: u.first_seen.and_utc().timestamp_micros(),
            last_us: u.last_seen.and_utc().timestamp_micros(),
            hits: u.hits,
        }
    }
}

impl From<KeyUse> for UseRecord {
    fn from(u: KeyUse) -> Self {
        UseRecord::from(&u)
    }
}

impl From<&UseRecord> for KeyUse {
    fn from(r: &UseRecord) -> Self {
        let time = |us| chrono::DateTime::from_timestamp_micros(us).unwrap_or_default().naive_utc();
        KeyUse {
            key_id: r.key_id,
            agent_id: r.agent_id,
            ip: std::net::Ipv6Addr::from(r.ip).to_canonical(),
            first_seen: time(r.first_us),
            last_seen: time(r.last_us),
            hits: r.hits,
        }
    }
}

pub fn pack(uses: &[KeyUse]) -> Vec<u8> {
    pack_records(uses.iter().map(UseRecord::from))
}

/// Packs records as they are (a fold's merged pieces), without going through `KeyUse`.
pub fn pack_records(records: impl ExactSizeIterator<Item = UseRecord>) -> Vec<u8> {
    let mut out = Vec::with_capacity(records.len() * RECORD);
    for r in records {
        out.extend_from_slice(&r.key_id.to_le_bytes());
        out.extend_from_slice(&r.agent_id.to_le_bytes());
        out.extend_from_slice(&r.ip);
        out.extend_from_slice(&r.first_us.to_le_bytes());
        out.extend_from_slice(&r.last_us.to_le_bytes());
        out.extend_from_slice(&r.hits.to_le_bytes());
    }
    out
}

/// The uses of a packed batch; a cut-off record at the end is ignored.
pub fn unpack(bytes: &[u8]) -> impl ExactSizeIterator<Item = KeyUse> + '_ {
    unpack_records(bytes).map(|r| KeyUse::from(&r))
}

/// The records of a packed batch as they are (what a fold's merge holds); a cut-off record at
/// the end is ignored.
pub fn unpack_records(bytes: &[u8]) -> impl ExactSizeIterator<Item = UseRecord> + '_ {
    fn int(b: &[u8]) -> i64 {
        i64::from_le_bytes(b.try_into().expect("8 bytes"))
    }
    bytes.chunks_exact(RECORD).map(|r| UseRecord {
        key_id: int(&r[0..8]),
        agent_id: int(&r[8..16]),
        ip: r[16..32].try_into().expect("16 bytes"),
        first_us: int(&r[32..40]),
        last_us: int(&r[40..48]),
        hits: int(&r[48..56]),
    })
}

use super::sqlite_rows::{execute_all, sqlite_timestamp, BindRow, RowValues, Rows, RowsSql, ROWS_PER_STATEMENT};

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

/// Appends uses to the pending log as a single row, one small sequential write; returns its id.
pub fn append(conn: &mut DbConn, uses: &[KeyUse]) -> DbResult<i64> {
    Ok(diesel::insert_into(key_usage_pending::table)
        .values((key_usage_pending::use_count.eq(uses.len() as i64), key_usage_pending::uses.eq(pack(uses))))
        .returning(key_usage_pending::id)
        .get_result(conn)?)
}

/// What waits to be folded: flushes in the pending log, and merged pieces (`append_merged`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Backlog {
    /// Flushes in the pending log, and the uses they hold.
    pub batches: usize,
    pub uses: i64,
    /// Merged pieces, and the uses (one per key, agent and address) they still hold.
    pub pieces: usize,
    pub merged_uses: i64,
}

impl Backlog {
    /// Nothing waits: every use recorded is folded.
    pub fn is_empty(&self) -> bool {
        self.batches == 0 && self.pieces == 0
    }

    pub fn total_uses(&self) -> i64 {
        self.uses + self.merged_uses
    }
}

pub fn backlog(conn: &mut DbConn) -> DbResult<Backlog> {
    let batches: Vec<i64> = key_usage_pending::table.select(key_usage_pending::use_count).load(conn)?;
    let pieces: Vec<i64> = key_usage_merged::table.select(key_usage_merged::use_count).load(conn)?;
    Ok(Backlog {
        batches: batches.len(),
        uses: batches.iter().sum(),
        pieces: pieces.len(),
        merged_uses: pieces.iter().sum(),
    })
}

#[derive(QueryableByName)]
struct PendingId {
    #[diesel(sql_type = BigInt)]
    id: i64,
}

#[derive(QueryableByName)]
struct PendingUses {
    #[diesel(sql_type = diesel::sql_types::Binary)]
    uses: Vec<u8>,
}

/// The oldest pending batches' ids, up to `limit`, to fold (call inside a transaction). On
/// PostgreSQL they stay locked until it ends, and batches another instance is folding are
/// skipped: each batch is folded exactly once.
pub fn take_pending(conn: &mut DbConn, limit: i64) -> DbResult<Vec<i64>> {
    let sql = match conn {
        DbConn::Sqlite(_) => "SELECT id FROM key_usage_pending ORDER BY id LIMIT ?",
        DbConn::Pg(_) => "SELECT id FROM key_usage_pending ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
    };
    let batches: Vec<PendingId> = diesel::sql_query(sql).bind::<BigInt, _>(limit).load(conn)?;
    Ok(batches.into_iter().map(|b| b.id).collect())
}

/// One pending batch's uses, packed (see `unpack`): read one at a time, so a fold holds one
/// batch in memory beside what it has merged.
pub fn pending_batch(conn: &mut DbConn, id: i64) -> DbResult<Vec<u8>> {
    let sql = match conn {
        DbConn::Sqlite(_) => "SELECT uses FROM key_usage_pending WHERE id = ?",
        DbConn::Pg(_) => "SELECT uses FROM key_usage_pending WHERE id = $1",
    };
    let batch: Option<PendingUses> = diesel::sql_query(sql).bind::<BigInt, _>(id).get_result(conn).optional()?;
    Ok(batch.map(|b| b.uses).unwrap_or_default())
}

pub fn remove_pending(conn: &mut DbConn, ids: &[i64]) -> DbResult<()> {
    diesel::delete(key_usage_pending::table.filter(key_usage_pending::id.eq_any(ids))).execute(conn)?;
    Ok(())
}

/// Every use not yet folded: in the pending log, and in merged pieces from their first key on.
pub fn pending_uses(conn: &mut DbConn) -> DbResult<Vec<KeyUse>> {
    let batches: Vec<Vec<u8>> = key_usage_pending::table.select(key_usage_pending::uses).load(conn)?;
    let pieces: Vec<(i64, Vec<u8>)> = key_usage_merged::table
        .inner_join(key_usage_merged_uses::table.on(key_usage_merged_uses::piece_id.eq(key_usage_merged::id)))
        .select((key_usage_merged::first_key, key_usage_merged_uses::uses))
        .load(conn)?;
    let mut uses: Vec<KeyUse> = batches.iter().flat_map(|b| unpack(b)).collect();
    for (first_key, packed) in &pieces {
        uses.extend(unpack(packed).filter(|u| u.key_id >= *first_key));
    }
    Ok(uses)
}

/// A piece of a merge: uses of keys `first_key` to `last_key`, one per key, agent and
/// address, in key order, not yet folded.
#[derive(Clone, Debug, PartialEq, Eq, Queryable, QueryableByName)]
pub struct MergedPiece {
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    #[diesel(sql_type = BigInt)]
    pub first_key: i64,
    #[diesel(sql_type = BigInt)]
    pub last_key: i64,
    #[diesel(sql_type = BigInt)]
    pub use_count: i64,
}

/// Stores merged uses (sorted by `KeyUse::row`, not empty) as a piece.
pub fn append_merged(conn: &mut DbConn, uses: &[UseRecord]) -> DbResult<()> {
    let (Some(first), Some(last)) = (uses.first(), uses.last()) else { return Ok(()) };
    let id: i64 = diesel::insert_into(key_usage_merged::table)
        .values((
            key_usage_merged::first_key.eq(first.key_id),
            key_usage_merged::last_key.eq(last.key_id),
            key_usage_merged::use_count.eq(uses.len() as i64),
        ))
        .returning(key_usage_merged::id)
        .get_result(conn)?;
    diesel::insert_into(key_usage_merged_uses::table)
        .values((
            key_usage_merged_uses::piece_id.eq(id),
            key_usage_merged_uses::uses.eq(pack_records(uses.iter().copied())),
        ))
        .execute(conn)?;
    Ok(())
}

/// The merged pieces holding uses of keys from `from` on (their uses not read).
pub fn merged_pieces_from(conn: &mut DbConn, from: i64) -> DbResult<Vec<MergedPiece>> {
    Ok(key_usage_merged::table
        .filter(key_usage_merged::last_key.ge(from))
        .select((
            key_usage_merged::id,
            key_usage_merged::first_key,
            key_usage_merged::last_key,
            key_usage_merged::use_count,
        ))
        .load(conn)?)
}

/// The merged pieces with uses of keys in `keys`, to fold (call inside a transaction; their
/// uses are read with `merged_uses`). On PostgreSQL they stay locked until it ends, and pieces
/// another instance is folding are skipped: each use is folded exactly once.
pub fn claim_merged(conn: &mut DbConn, keys: RangeInclusive<i64>) -> DbResult<Vec<MergedPiece>> {
    let sql = match conn {
        DbConn::Sqlite(_) => {
            "SELECT id, first_key, last_key, use_count FROM key_usage_merged WHERE first_key <= ? AND last_key >= ?"
        }
        DbConn::Pg(_) => {
            "SELECT id, first_key, last_key, use_count FROM key_usage_merged \
             WHERE first_key <= $1 AND last_key >= $2 FOR UPDATE SKIP LOCKED"
        }
    };
    Ok(diesel::sql_query(sql).bind::<BigInt, _>(*keys.end()).bind::<BigInt, _>(*keys.start()).load(conn)?)
}

/// The packed uses of these pieces, as stored (all of them, from before their first key too):
/// (piece, uses).
pub fn merged_uses(conn: &mut DbConn, ids: &[i64]) -> DbResult<Vec<(i64, Vec<u8>)>> {
    Ok(key_usage_merged_uses::table
        .filter(key_usage_merged_uses::piece_id.eq_any(ids))
        .select((key_usage_merged_uses::piece_id, key_usage_merged_uses::uses))
        .load(conn)?)
}

/// A merged piece folded up to its key `first_key` (exclusive): it holds `use_count` uses from there.
pub fn keep_merged_from(conn: &mut DbConn, id: i64, first_key: i64, use_count: i64) -> DbResult<()> {
    diesel::update(key_usage_merged::table.find(id))
        .set((key_usage_merged::first_key.eq(first_key), key_usage_merged::use_count.eq(use_count)))
        .execute(conn)?;
    Ok(())
}

pub fn remove_merged(conn: &mut DbConn, ids: &[i64]) -> DbResult<()> {
    diesel::delete(key_usage_merged_uses::table.filter(key_usage_merged_uses::piece_id.eq_any(ids))).execute(conn)?;
    diesel::delete(key_usage_merged::table.filter(key_usage_merged::id.eq_any(ids))).execute(conn)?;
    Ok(())
}

/// The key of a packed use: its first eight bytes.
fn record_key(record: &[u8; RECORD]) -> i64 {
    i64::from_le_bytes(record[..8].try_into().expect("8 bytes"))
}

/// The records (by index) of packed uses in key order whose keys lie in `keys`.
pub fn records_of_keys(packed: &[u8], keys: RangeInclusive<i64>) -> std::ops::Range<usize> {
    let (records, _) = packed.as_chunks::<RECORD>();
    records.partition_point(|r| record_key(r) < *keys.start())
        ..records.partition_point(|r| record_key(r) <= *keys.end())
}

/// The key of the last of some packed uses.
pub fn last_key(packed: &[u8]) -> Option<i64> {
    packed.as_chunks::<RECORD>().0.last().map(record_key)
}

/// A row of key_usage as an upsert left it: the hits it holds now.
#[derive(QueryableByName)]
struct Upserted {
    #[diesel(sql_type = BigInt)]
    key_id: i64,
    #[diesel(sql_type = BigInt)]
    agent_id: i64,
    #[diesel(sql_type = Text)]
    ip: String,
    #[diesel(sql_type = BigInt)]
    hits: i64,
}

/// The uses whose (key, agent, IP) row the upsert created: a row it only added to holds more
/// hits than the use brought.
fn created_rows(uses: &[KeyUse], upserted: Vec<Upserted>) -> Vec<KeyUse> {
    let brought: HashMap<(i64, i64, String), &KeyUse> =
        uses.iter().map(|u| ((u.key_id, u.agent_id, u.ip.to_string()), u)).collect();
    upserted
        .into_iter()
        .filter_map(|row| {
            let u = brought.get(&(row.key_id, row.agent_id, row.ip))?;
            (row.hits == u.hits).then(|| (*u).clone())
        })
        .collect()
}

/// Adds uses to key_usage as atomic increments (call inside a transaction), so concurrent
/// folds from several instances add up exactly. Each (key, agent, IP) appears once in `uses`,
/// which come sorted so that neighbouring rows share pages. Uses of keys deleted meanwhile
/// are dropped. Returns the uses that made a row of their own: a key used by an agent, or from
/// an address, for the first time.
pub fn add_uses(conn: &mut DbConn, uses: &[KeyUse]) -> DbResult<Vec<KeyUse>> {
    let upserted = match &mut *conn {
        DbConn::Pg(pg) => add_uses_pg(pg, uses)?,
        DbConn::Sqlite(sqlite) => add_uses_sqlite(sqlite, uses)?,
    };
    // The keys the upsert found, so the daily counts need not look each key up again.
    let kept: std::collections::HashSet<i64> = upserted.iter().map(|row| row.key_id).collect();
    let created = created_rows(uses, upserted);
    add_daily(conn, uses.iter().filter(|u| kept.contains(&u.key_id)))?;
    Ok(created)
}

/// key_usage's upsert on SQLite, a row of values per use.
static USAGE_UPSERT: RowsSql = RowsSql::new(
    "INSERT INTO key_usage (key_id, agent_id, ip, first_seen, last_seen, hits) \
     SELECT v.column1, v.column2, v.column3, v.column4, v.column5, v.column6 FROM (VALUES ",
    ") AS v WHERE EXISTS (SELECT 1 FROM user_keys k WHERE k.id = v.column1) \
     ON CONFLICT (key_id, agent_id, ip) DO UPDATE SET hits = key_usage.hits + excluded.hits, \
       first_seen = MIN(key_usage.first_seen, excluded.first_seen), \
       last_seen = MAX(key_usage.last_seen, excluded.last_seen) \
     RETURNING key_id, agent_id, ip, hits",
);
struct UsageUpsert;

/// A use as SQLite takes it: the address and times as text.
struct UseValues {
    key_id: i64,
    agent_id: i64,
    ip: String,
    first_seen: String,
    last_seen: String,
    hits: i64,
}

impl BindRow for UseValues {
    fn bind<'b>(&'b self, values: &mut RowValues<'_, '_, 'b>) -> QueryResult<()> {
        values
            .push::<BigInt, _>(&self.key_id)?
            .push::<BigInt, _>(&self.agent_id)?
            .push::<Text, _>(&self.ip)?
            .push::<Text, _>(&self.first_seen)?
            .push::<Text, _>(&self.last_seen)?
            .push::<BigInt, _>(&self.hits)?;
        Ok(())
    }
}

fn add_uses_sqlite(conn: &mut diesel::SqliteConnection, uses: &[KeyUse]) -> DbResult<Vec<Upserted>> {
    let mut upserted = Vec::with_capacity(uses.len());
    for chunk in uses.chunks(ROWS_PER_STATEMENT) {
        let values: Vec<UseValues> = chunk
            .iter()
            .map(|u| UseValues {
                key_id: u.key_id,
                agent_id: u.agent_id,
                ip: u.ip.to_string(),
                first_seen: sqlite_timestamp(u.first_seen),
                last_seen: sqlite_timestamp(u.last_seen),
                hits: u.hits,
            })
            .collect();
        upserted.extend(Rows::<UsageUpsert, _>::new(&USAGE_UPSERT, &values).load::<Upserted>(conn)?);
    }
    Ok(upserted)
}

/// PostgreSQL takes the rows as six arrays in one statement: one plan, however many rows.
fn add_uses_pg(conn: &mut diesel::PgConnection, uses: &[KeyUse]) -> DbResult<Vec<Upserted>> {
    use diesel::sql_types::Array;
    let mut upserted = Vec::with_capacity(uses.len());
    for chunk in uses.chunks(10_000) {
        let rows = diesel::sql_query(
            "INSERT INTO key_usage (key_id, agent_id, ip, first_seen, last_seen, hits) \
             SELECT v.key_id, v.agent_id, v.ip, v.first_seen, v.last_seen, v.hits \
             FROM unnest($1, $2, $3, $4, $5, $6) AS v(key_id, agent_id, ip, first_seen, last_seen, hits) \
             WHERE EXISTS (SELECT 1 FROM user_keys k WHERE k.id = v.key_id) \
             ON CONFLICT (key_id, agent_id, ip) DO UPDATE SET hits = key_usage.hits + excluded.hits, \
               first_seen = LEAST(key_usage.first_seen, excluded.first_seen), \
               last_seen = GREATEST(key_usage.last_seen, excluded.last_seen) \
             RETURNING key_id, agent_id, ip, hits",
        )
        .bind::<Array<BigInt>, _>(chunk.iter().map(|u| u.key_id).collect::<Vec<_>>())
        .bind::<Array<BigInt>, _>(chunk.iter().map(|u| u.agent_id).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(chunk.iter().map(|u| u.ip.to_string()).collect::<Vec<_>>())
        .bind::<Array<Timestamp>, _>(chunk.iter().map(|u| u.first_seen).collect::<Vec<_>>())
        .bind::<Array<Timestamp>, _>(chunk.iter().map(|u| u.last_seen).collect::<Vec<_>>())
        .bind::<Array<BigInt>, _>(chunk.iter().map(|u| u.hits).collect::<Vec<_>>())
        .load::<Upserted>(conn)?;
        upserted.extend(rows);
    }
    Ok(upserted)
}

/// Every (agent, address) these keys have been used by and from, for those of them that are of
/// one of `key_types` and not revoked: (key, its owner, agent number, ip).
pub fn clients_of_live_keys(
    conn: &mut DbConn,
    key_ids: &[i64],
    key_types: &[String],
) -> DbResult<Vec<(i64, i64, i64, String)>> {
    use super::schema::user_keys;
    let mut out = Vec::new();
    for chunk in key_ids.chunks(500) {
        out.extend(
            key_usage::table
                .inner_join(user_keys::table)
                .filter(key_usage::key_id.eq_any(chunk))
                .filter(user_keys::key_type.eq_any(key_types))
                .filter(user_keys::revoked_at.is_null())
                .select((key_usage::key_id, user_keys::user_id, key_usage::agent_id, key_usage::ip))
                .load::<(i64, i64, i64, String)>(conn)?,
        );
    }
    Ok(out)
}

/// The user agents with these numbers, as sent.
pub fn agents_named(conn: &mut DbConn, ids: &[i64]) -> DbResult<HashMap<i64, String>> {
    let mut out = HashMap::new();
    for chunk in ids.chunks(500) {
        out.extend(
            user_agents::table
                .filter(user_agents::id.eq_any(chunk))
                .select((user_agents::id, user_agents::agent))
                .load::<(i64, String)>(conn)?,
        );
    }
    Ok(out)
}

/// Days of uses kept per key: the page shows 30.
pub const DAILY_DAYS_KEPT: i64 = 60;

/// A time's day: whole days since 1970-01-01, UTC.
pub fn day_of(at: NaiveDateTime) -> i64 {
    crate::domain::time::to_unix(at).div_euclid(86_400)
}

/// key_daily_uses's upsert on SQLite, a row of values per key and day.
static DAILY_UPSERT: RowsSql = RowsSql::new(
    "INSERT INTO key_daily_uses (key_id, day, hits) SELECT v.column1, v.column2, v.column3 FROM (VALUES ",
    ") AS v WHERE true ON CONFLICT (key_id, day) DO UPDATE SET hits = key_daily_uses.hits + excluded.hits",
);
struct DailyUpsert;

struct DayValues {
    key_id: i64,
    day: i64,
    hits: i64,
}

impl BindRow for DayValues {
    fn bind<'b>(&'b self, values: &mut RowValues<'_, '_, 'b>) -> QueryResult<()> {
        values.push::<BigInt, _>(&self.key_id)?.push::<BigInt, _>(&self.day)?.push::<BigInt, _>(&self.hits)?;
        Ok(())
    }
}

/// Adds `uses` (of keys that exist) to each key's count for the day of its last use (a batch
/// spans seconds), and forgets days past `DAILY_DAYS_KEPT` (a range at the table's front, empty
/// on most folds).
fn add_daily<'u>(conn: &mut DbConn, uses: impl Iterator<Item = &'u KeyUse>) -> DbResult<()> {
    let mut per_day: std::collections::BTreeMap<(i64, i64), i64> = Default::default();
    for u in uses {
        *per_day.entry((u.key_id, day_of(u.last_seen))).or_default() += u.hits;
    }
    let Some(latest) = per_day.keys().map(|(_, day)| *day).max() else { return Ok(()) };
    let rows: Vec<DayValues> =
        per_day.into_iter().map(|((key_id, day), hits)| DayValues { key_id, day, hits }).collect();
    match conn {
        DbConn::Sqlite(sqlite) => {
            execute_all::<DailyUpsert, _>(sqlite, &DAILY_UPSERT, &rows)?;
        }
        // As three arrays, one plan however many rows: see `add_uses_pg`.
        DbConn::Pg(pg) => {
            use diesel::sql_types::Array;
            for chunk in rows.chunks(10_000) {
                diesel::sql_query(
                    "INSERT INTO key_daily_uses (key_id, day, hits) \
                     SELECT v.key_id, v.day, v.hits FROM unnest($1, $2, $3) AS v(key_id, day, hits) \
                     ON CONFLICT (key_id, day) DO UPDATE SET hits = key_daily_uses.hits + excluded.hits",
                )
                .bind::<Array<BigInt>, _>(chunk.iter().map(|r| r.key_id).collect::<Vec<_>>())
                .bind::<Array<BigInt>, _>(chunk.iter().map(|r| r.day).collect::<Vec<_>>())
                .bind::<Array<BigInt>, _>(chunk.iter().map(|r| r.hits).collect::<Vec<_>>())
                .execute(pg)?;
            }
        }
    }
    diesel::delete(key_daily_uses::table.filter(key_daily_uses::day.lt(latest - DAILY_DAYS_KEPT))).execute(conn)?;
    Ok(())
}

/// Uses per day of these keys on the days `days`: (key, day, hits), days without uses absent.
/// The table is ordered by day, so each day is named: one seek per key and day, never a range
/// of days over every key.
pub fn daily_for_keys(
    conn: &mut DbConn,
    key_ids: &[i64],
    days: std::ops::RangeInclusive<i64>,
) -> DbResult<Vec<(i64, i64, i64)>> {
    let days: Vec<i64> = days.collect();
    let mut out = Vec::new();
    for chunk in key_ids.chunks(500) {
        out.extend(
            key_daily_uses::table
                .filter(key_daily_uses::day.eq_any(&days))
                .filter(key_daily_uses::key_id.eq_any(chunk))
                .select((key_daily_uses::key_id, key_daily_uses::day, key_daily_uses::hits))
                .load::<(i64, i64, i64)>(conn)?,
        );
    }
    Ok(out)
}

/// The latest folded use of each of these keys that has one: its time and address. The usage
/// table holds every use exactly, where "last used" may lag behind it under overload.
pub fn latest_folded_uses(conn: &mut DbConn, key_ids: &[i64]) -> DbResult<Vec<(i64, NaiveDateTime, IpAddr)>> {
    let mut latest: HashMap<i64, (NaiveDateTime, IpAddr)> = HashMap::new();
    for chunk in key_ids.chunks(500) {
        let rows: Vec<(i64, NaiveDateTime, String)> = key_usage::table
            .filter(key_usage::key_id.eq_any(chunk))
            .select((key_usage::key_id, key_usage::last_seen, key_usage::ip))
            .load(conn)?;
        for (key_id, at, ip) in rows {
            let Ok(ip) = ip.parse::<IpAddr>() else { continue };
            let entry = latest.entry(key_id).or_insert((at, ip));
            if at > entry.0 {
                *entry = (at, ip);
            }
        }
    }
    let mut out: Vec<_> = latest.into_iter().map(|(id, (at, ip))| (id, at, ip)).collect();
    out.sort_unstable_by_key(|(id, _, _)| *id);
    Ok(out)
}

/// Moves each key's "last used" forward (never back, whichever instance flushes first).
pub fn mark_last_used(conn: &mut DbConn, uses: &[(i64, NaiveDateTime, IpAddr)]) -> DbResult<()> {
    let sqlite = match conn {
        DbConn::Pg(pg) => return mark_last_used_pg(pg, uses),
        DbConn::Sqlite(sqlite) => sqlite,
    };
    let rows: Vec<MarkValues> = uses
        .iter()
        .map(|(key_id, at, ip)| MarkValues {
            key_id: *key_id,
            at: sqlite_timestamp(*at),
            ip: ip.to_string(),
            ip_hex: crate::domain::ip_restriction::ip_hex(*ip),
        })
        .collect();
    execute_all::<MarkTime, _>(sqlite, &MARK_TIME, &rows)?;
    execute_all::<MarkAddress, _>(sqlite, &MARK_ADDRESS, &rows)?;
    Ok(())
}

// Two statements: SQLite rewrites an index entry whenever its column is SET, even to the same
// value, and a key is mostly used again from the address it was last used from. The address
// moves only with the use that moved the time. (bench/last_used_marks.py, 1,000,000 keys all
// marked before: 114 rather than 154 ms a thousand marks; first marks cost the same.)
static MARK_TIME: RowsSql = RowsSql::new(
    "UPDATE key_last_use SET last_used_at = v.column2 FROM (VALUES ",
    ") AS v WHERE key_last_use.key_id = v.column1 \
     AND (key_last_use.last_used_at IS NULL OR key_last_use.last_used_at < v.column2)",
);
struct MarkTime;
static MARK_ADDRESS: RowsSql = RowsSql::new(
    "UPDATE key_last_use SET last_used_ip = v.column3, last_used_ip_hex = v.column4 FROM (VALUES ",
    ") AS v WHERE key_last_use.key_id = v.column1 \
     AND key_last_use.last_used_at = v.column2 AND key_last_use.last_used_ip_hex IS NOT v.column4",
);
struct MarkAddress;

/// A key's "last used" as SQLite takes it.
struct MarkValues {
    key_id: i64,
    at: String,
    ip: String,
    ip_hex: String,
}

impl BindRow for MarkValues {
    fn bind<'b>(&'b self, values: &mut RowValues<'_, '_, 'b>) -> QueryResult<()> {
        values
            .push::<BigInt, _>(&self.key_id)?
            .push::<Text, _>(&self.at)?
            .push::<Text, _>(&self.ip)?
            .push::<Text, _>(&self.ip_hex)?;
        Ok(())
    }
}

fn mark_last_used_pg(conn: &mut diesel::PgConnection, uses: &[(i64, NaiveDateTime, IpAddr)]) -> DbResult<()> {
    use diesel::sql_types::Array;
    for chunk in uses.chunks(10_000) {
        let hex: Vec<String> = chunk.iter().map(|(_, _, ip)| crate::domain::ip_restriction::ip_hex(*ip)).collect();
        diesel::sql_query(
            "UPDATE key_last_use SET last_used_at = v.at, last_used_ip = v.ip, last_used_ip_hex = v.hex \
             FROM unnest($1, $2, $3, $4) AS v(id, at, ip, hex) \
             WHERE key_last_use.key_id = v.id AND (key_last_use.last_used_at IS NULL OR key_last_use.last_used_at < v.at)",
        )
        .bind::<Array<BigInt>, _>(chunk.iter().map(|(id, _, _)| *id).collect::<Vec<_>>())
        .bind::<Array<Timestamp>, _>(chunk.iter().map(|(_, at, _)| *at).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(chunk.iter().map(|(_, _, ip)| ip.to_string()).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(hex)
        .execute(conn)?;
    }
    Ok(())
}

/// Usage of these keys aggregated in the database to one row per key and user agent, with the
/// address of the latest use, so a page reads one row per line it shows rather than every
/// (agent, address) pair ever seen. Uses still in the pending log are not in it yet.
pub fn summary_for_keys(conn: &mut DbConn, key_ids: &[i64]) -> DbResult<Vec<UsageRow>> {
    // The address of the latest use is picked while grouping, not by joining the groups back to
    // their rows (which reads every row twice, and once per address used at the same instant).
    // SQLite takes a bare column from the row that holds the one MAX() of the query.
    let latest_ip = match conn {
        DbConn::Sqlite(_) => "ip",
        DbConn::Pg(_) => "(array_agg(ip ORDER BY last_seen DESC))[1]",
    };
    let mut rows: Vec<UsageRow> = Vec::new();
    for chunk in key_ids.chunks(500) {
        // The ids are integers read from the database, written into the statement as numbers.
        let ids = chunk.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
        let sql = format!(
            "SELECT g.key_id, a.agent AS user_agent, g.ip, g.last_seen, g.hits \
             FROM (SELECT key_id, agent_id, {latest_ip} AS ip, MAX(last_seen) AS last_seen, \
                          CAST(SUM(hits) AS BIGINT) AS hits \
                   FROM key_usage WHERE key_id IN ({ids}) GROUP BY key_id, agent_id) g \
             JOIN user_agents a ON a.id = g.agent_id"
        );
        rows.extend(diesel::sql_query(sql).load::<UsageRow>(conn)?);
    }
    Ok(rows)
}

/// Every use recorded for a key, folded or still pending.
pub fn total_hits(conn: &mut DbConn, key_id: i64) -> DbResult<i64> {
    // Summed here: SUM(BIGINT) is NUMERIC on PostgreSQL but INTEGER on SQLite.
    let folded: Vec<i64> = key_usage::table.filter(key_usage::key_id.eq(key_id)).select(key_usage::hits).load(conn)?;
    let pending = pending_uses(conn)?.into_iter().filter(|u| u.key_id == key_id).map(|u| u.hits);
    Ok(folded.iter().copied().chain(pending).sum())
}

/// Every use recorded for any of the keys that `keep` accepts, folded or still pending.
pub fn grand_total(conn: &mut DbConn, keep: impl Fn(i64) -> bool) -> DbResult<i64> {
    let folded: Vec<(i64, i64)> = key_usage::table.select((key_usage::key_id, key_usage::hits)).load(conn)?;
    let pending = pending_uses(conn)?;
    Ok(folded
        .into_iter()
        .chain(pending.into_iter().map(|u| (u.key_id, u.hits)))
        .filter(|(k, _)| keep(*k))
        .map(|(_, h)| h)
        .sum())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A key's mark takes the time and address of its latest use, whichever order marks come
    /// in; an address that stays the same is kept.
    #[test]
    fn a_mark_moves_with_the_latest_use_and_its_address() {
        use diesel::connection::SimpleConnection;
        #[derive(diesel::QueryableByName, Debug, PartialEq)]
        struct Mark {
            #[diesel(sql_type = Timestamp)]
            last_used_at: NaiveDateTime,
            #[diesel(sql_type = Text)]
            last_used_ip: String,
            #[diesel(sql_type = Text)]
            last_used_ip_hex: String,
        }
        let dir = tempfile::tempdir().unwrap();
        let db =
            crate::db::Db::connect(&format!("sqlite://{}", dir.path().join("marks.sqlite3").display()), 2).unwrap();
        let at =
            |minute: u32| chrono::NaiveDate::from_ymd_opt(2026, 12, 4).unwrap().and_hms_opt(10, minute, 0).unwrap();
        let (home, work): (IpAddr, IpAddr) = ("198.51.100.1".parse().unwrap(), "2001:db8::7".parse().unwrap());
        let mark = |marks: &[(i64, NaiveDateTime, IpAddr)]| {
            db.write_quietly(|conn| mark_last_used(conn, marks)).unwrap();
            db.read_blocking(|conn| {
                Ok(diesel::sql_query(
                    "SELECT last_used_at, last_used_ip, last_used_ip_hex FROM key_last_use ORDER BY key_id",
                )
                .load::<Mark>(conn)?)
            })
            .unwrap()
        };
        let expected = |minute, ip: IpAddr| Mark {
            last_used_at: at(minute),
            last_used_ip: ip.to_string(),
            last_used_ip_hex: crate::domain::ip_restriction::ip_hex(ip),
        };
        db.write_quietly(|conn| {
            conn.batch_execute(
                "INSERT INTO users (id, username, fullname, email, password_hash, created_at) \
                   VALUES (1, 'alice', 'Alice', 'a@example.org', 'x', '2026-11-01 00:00:00'); \
                 INSERT INTO user_keys (id, user_id, key_type, name, created_at) VALUES \
                   (1, 1, 'rss', 'one', '2026-11-01 00:00:00'), (2, 1, 'rss', 'two', '2026-11-01 00:00:00');",
            )?;
            Ok(())
        })
        .unwrap();
        assert_eq!(mark(&[(1, at(1), home), (2, at(1), home)]), vec![expected(1, home), expected(1, home)]);
        // Key 1 used later from elsewhere, key 2 from the same address.
        assert_eq!(mark(&[(1, at(3), work), (2, at(3), home)]), vec![expected(3, work), expected(3, home)]);
        // A mark older than the stored one (another instance's, late) moves nothing.
        assert_eq!(mark(&[(1, at(2), home)]), vec![expected(3, work), expected(3, home)]);
    }

    #[test]
    fn packed_uses_read_back_the_same() {
        let at = |s: &str| NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f").unwrap();
        let uses = vec![
            KeyUse {
                key_id: 7,
                agent_id: 3,
                ip: "203.0.113.9".parse().unwrap(),
                first_seen: at("2026-11-23 10:00:00.123456"),
                last_seen: at("2026-11-23 10:00:01.5"),
                hits: 4,
            },
            KeyUse {
                key_id: i64::MAX,
                agent_id: 1,
                ip: "2001:db8::1".parse().unwrap(),
                first_seen: at("1999-01-01 00:00:00"),
                last_seen: at("2099-12-31 23:59:59.999999"),
                hits: 1,
            },
        ];
        let mut packed = pack(&uses);
        assert_eq!(unpack(&packed).collect::<Vec<_>>(), uses);
        packed.truncate(packed.len() - 1);
        assert_eq!(unpack(&packed).collect::<Vec<_>>(), uses[..1], "a cut-off record is left out, not misread");
    }
}

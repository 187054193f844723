//! Recording use of keys, batched: uses are aggregated in memory per (key, agent, IP), appended
//! to a pending log in the database four times a second (one packed row per flush), and folded
//! from there into the usage table in sorted batches — at once when the site is quiet, every
//! few seconds under load. Nothing is written per request.

mod summary;

pub use summary::{summarise, AgentUse};

use crate::db::usage::KeyUse;
use crate::db::{Db, DbResult};
use chrono::NaiveDateTime;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Maps on the path of every use: foldhash is several times quicker than SipHash on agents'
/// long strings, and seeded per process, so clients cannot aim collisions at it.
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Longest user agent kept; longer ones are cut so one client cannot bloat the log.
const MAX_AGENT_LEN: usize = 512;

/// A key's "last used" is written at most this often, as Moodle writes a token's lastaccess;
/// the usage log itself stays exact.
const LAST_USED_GRANULARITY_SECONDS: i64 = 60;

/// How often the writer thread appends what is pending: a crash loses at most about this much.
pub const FLUSH_EVERY: Duration = Duration::from_millis(250);

/// A pending log of at most this many uses is folded at once, so usage shows on pages straight
/// away when the site is not busy.
const SMALL_BACKLOG: i64 = 5_000;

/// Under load the log is folded this often: the longer the wait, the more uses of each key are
/// merged before the random-access upserts, which cost the database most of what usage costs
/// it. PostgreSQL waits longer, as its folds run beside the requests' own queries.
fn fold_every(db: &Db) -> Duration {
    match db.backend() {
        crate::db::Backend::Sqlite => Duration::from_secs(10),
        crate::db::Backend::Postgres => Duration::from_secs(30),
    }
}

/// Pending batches (one flush each) one fold takes at most.
const BATCHES_PER_FOLD: i64 = 1_000;

/// A fold stops taking batches once it has merged this many (key, agent, address) rows, which
/// bounds its memory (about 150 bytes a row) however busy the site and however many keys…
const MAX_MERGED: usize = 150_000;

/// …or once it has read this many uses, which bounds how long it holds SQLite's one writer
/// while merging (about 50 ns a use).
const MAX_READ_USES: i64 = 2_000_000;

/// Upserts one transaction makes at most. More merged rows than this are written back to the
/// pending log as pieces of this size, in key order, in place of the batches they merge; each
/// piece is then folded in a transaction of its own, so that a fold never holds SQLite's writer
/// for long (about 10 µs an upsert) while every piece stays folded exactly once.
const PIECE_ROWS: usize = 5_000;

/// How long one tick of the folder goes on before leaving the rest to the next tick.
const FOLD_TICK_BUDGET: Duration = Duration::from_millis(500);

const SHARDS: usize = 16;

/// Keys whose "last used" one transaction moves at most, four times a second: after a start
/// under load every key is due at once, and moving them all in one go would hold the writer for
/// seconds. On PostgreSQL each move writes a new version of the key's row of key_last_use and
/// of its three index entries (about 60 µs of the server's CPU), so it takes a thousand a
/// second, which leaves the database to the requests; with more than 60,000 keys in constant
/// use, their "last used" moves a little less often than once a minute.
fn marks_per_write(db: &Db) -> usize {
    match db.backend() {
        crate::db::Backend::Sqlite => 1_000,
        crate::db::Backend::Postgres => 250,
    }
}

#[derive(Default)]
pub struct UsageRecorder {
    /// Keyed by (key, address) so that recording a use allocates nothing once the agent is known;
    /// split by key into shards, so that request threads seldom wait for each other.
    pending: [Mutex<FastMap<(i64, IpAddr), Vec<(String, Pending)>>>; SHARDS],
    /// When this instance last wrote each key's "last used".
    last_used_written: Mutex<FastMap<i64, NaiveDateTime>>,
    /// "Last used" moves due, for keys whose uses are folded, written a thousand at a time.
    last_used_due: Mutex<DueMarks>,
    /// User agents' numbers in `user_agents`.
    agent_ids: Mutex<FastMap<String, i64>>,
    folding: Mutex<FoldState>,
}

#[derive(Default)]
struct FoldState {
    last_fold: Option<Instant>,
    /// A fold left batches behind: the next tick goes on at once.
    catching_up: bool,
    /// Pieces of a merged fold still to be folded, in key order.
    pieces: std::collections::VecDeque<i64>,
}

/// What one transaction of a fold did.
enum FoldStep {
    /// Upserted these merged uses.
    Folded(Vec<KeyUse>),
    /// Wrote the merged uses back as pieces (their pending ids), to be folded one by one.
    Merged(Vec<i64>),
}

/// When the pending log is folded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fold {
    /// Some batches, if the log is small or the interval has passed (the writer thread's tick).
    WhenDue,
    /// Only if the log is small (before a page reads usage).
    IfSmall,
    /// Everything (shutdown).
    All,
}

#[derive(Clone, Copy)]
struct Pending {
    first_seen: NaiveDateTime,
    last_seen: NaiveDateTime,
    hits: i64,
}

impl Pending {
    fn merge(&mut self, other: Pending) {
        self.hits += other.hits;
        self.first_seen = self.first_seen.min(other.first_seen);
        self.last_seen = self.last_seen.max(other.last_seen);
    }
}

/// The agent as kept: cut at `MAX_AGENT_LEN` bytes, on a character boundary.
fn kept_agent(user_agent: &str) -> &str {
    if user_agent.len() <= MAX_AGENT_LEN {
        return user_agent;
    }
    let mut end = MAX_AGENT_LEN;
    while !user_agent.is_char_boundary(end) {
        end -= 1;
    }
    &user_agent[..end]
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

type Taken = Vec<((i64, IpAddr), Vec<(String, Pending)>)>;

impl UsageRecorder {
    pub fn record(&self, key_id: i64, user_agent: &str, ip: IpAddr, at: NaiveDateTime) {
        self.add(key_id, kept_agent(user_agent), ip, Pending { first_seen: at, last_seen: at, hits: 1 });
    }

    fn add(&self, key_id: i64, agent: &str, ip: IpAddr, uses: Pending) {
        let mut pending = lock(&self.pending[key_id.rem_euclid(SHARDS as i64) as usize]);
        let agents = pending.entry((key_id, ip)).or_default();
        match agents.iter_mut().find(|(a, _)| a == agent) {
            Some((_, p)) => p.merge(uses),
            None => agents.push((agent.to_owned(), uses)),
        }
    }

    fn take(&self) -> Taken {
        // Each shard starts again with the room it needed last time, sparing the hot path regrowth.
        self.pending
            .iter()
            .flat_map(|shard| {
                let mut shard = lock(shard);
                let room = FastMap::with_capacity_and_hasher(shard.len(), Default::default());
                std::mem::replace(&mut *shard, room)
            })
            .collect()
    }

    fn restore(&self, taken: Taken) {
        for ((key_id, ip), agents) in taken {
            for (agent, uses) in agents {
                self.add(key_id, &agent, ip, uses);
            }
        }
    }

    /// Appends what is pending to the database's pending log, as one row. On failure the uses
    /// are put back, to be retried next time.
    pub fn flush_blocking(&self, db: &Db) -> DbResult<usize> {
        self.flush_within(db, None).map(|n| n.unwrap_or(0))
    }

    /// Flushes, but gives up (`None`, the uses kept) if the writer is not free within `wait`.
    fn flush_within(&self, db: &Db, wait: Option<Duration>) -> DbResult<Option<usize>> {
        let taken = self.take();
        if taken.is_empty() {
            return Ok(Some(0));
        }
        let unknown: Vec<&str> = {
            let known = lock(&self.agent_ids);
            let mut unknown: Vec<&str> = taken
                .iter()
                .flat_map(|(_, agents)| agents.iter().map(|(a, _)| a.as_str()))
                .filter(|a| !known.contains_key(*a))
                .collect();
            unknown.sort_unstable();
            unknown.dedup();
            unknown
        };
        let write = |conn: &mut crate::db::DbConn| {
            let new_ids =
                if unknown.is_empty() { HashMap::new() } else { crate::db::usage::agent_ids(conn, &unknown)? };
            let uses = {
                let mut known = lock(&self.agent_ids);
                if known.len() + new_ids.len() > 100_000 {
                    known.clear();
                }
                known.extend(new_ids);
                let mut uses = Vec::with_capacity(taken.len());
                for ((key_id, ip), agents) in &taken {
                    for (agent, p) in agents {
                        let Some(agent_id) = known.get(agent).copied() else { continue };
                        uses.push(KeyUse {
                            key_id: *key_id,
                            agent_id,
                            ip: *ip,
                            first_seen: p.first_seen,
                            last_seen: p.last_seen,
                            hits: p.hits,
                        });
                    }
                }
                uses
            };
            crate::db::usage::append(conn, &uses)?;
            Ok(uses.len())
        };
        let written = match wait {
            None => db.write_quietly(write).map(Some),
            Some(wait) => db.write_quietly_within(wait, write),
        };
        match written {
            Ok(Some(n)) => Ok(Some(n)),
            Ok(None) => {
                self.restore(taken);
                Ok(None)
            }
            Err(e) => {
                lock(&self.agent_ids).clear();
                self.restore(taken);
                Err(e)
            }
        }
    }

    /// Folds the pending log into the usage table, as `how` says; returns the uses folded.
    pub fn fold_blocking(&self, db: &Db, how: Fold) -> DbResult<usize> {
        let mut state = match how {
            // A page does not wait behind a long fold; it shows what is folded.
            Fold::IfSmall => match self.folding.try_lock() {
                Ok(state) => state,
                Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => return Ok(0),
            },
            _ => lock(&self.folding),
        };
        if how == Fold::IfSmall && !state.pieces.is_empty() {
            return Ok(0);
        }
        let fold_every = fold_every(db);
        let started = Instant::now();
        let mut folded = 0;
        loop {
            let step = match state.pieces.pop_front() {
                Some(piece) => match db.write_quietly(|conn| fold_piece(conn, piece)) {
                    Ok(uses) => FoldStep::Folded(uses),
                    Err(e) => {
                        state.pieces.push_front(piece);
                        return Err(e);
                    }
                },
                None => {
                    let interval_passed = state.last_fold.is_none_or(|t| t.elapsed() >= fold_every);
                    let catching_up = state.catching_up;
                    let due = |uses: i64| match how {
                        Fold::All => true,
                        Fold::IfSmall => uses <= SMALL_BACKLOG,
                        Fold::WhenDue => uses <= SMALL_BACKLOG || interval_passed || catching_up,
                    };
                    let merged = db.write_quietly(|conn| merge_due_batches(conn, due))?;
                    let Some((step, more)) = merged else { break };
                    state.catching_up = more;
                    if !more {
                        state.last_fold = Some(Instant::now());
                    }
                    step
                }
            };
            match step {
                // Only uses that are folded for good move a key's "last used".
                FoldStep::Folded(uses) => {
                    self.note_last_used(&uses);
                    folded += uses.len();
                }
                FoldStep::Merged(pieces) => state.pieces.extend(pieces),
            }
            let more = state.catching_up || !state.pieces.is_empty();
            if !more || (how != Fold::All && started.elapsed() >= FOLD_TICK_BUDGET) {
                break;
            }
            // Let a waiting append have the writer between two transactions.
            std::thread::yield_now();
        }
        Ok(folded)
    }

    /// Before a page reads usage: this instance's uses written, and folded unless the site is
    /// so busy that the log is long (then the page shows usage up to `fold_every` old).
    pub async fn settle(self: &Arc<Self>, db: &Db) -> DbResult<()> {
        let (recorder, db) = (self.clone(), db.clone());
        actix_web::web::block(move || {
            // Behind a long fold the page shows what is written rather than wait for it.
            if recorder.flush_within(&db, Some(Duration::from_millis(50)))?.is_none() {
                return Ok(());
            }
            if recorder.fold_blocking(&db, Fold::IfSmall)? > 0 {
                recorder.write_last_used_blocking(&db)?;
            }
            Ok(())
        })
        .await
        .map_err(|_| crate::db::DbError::Cancelled)?
    }

    /// Everything written and folded (graceful shutdown).
    pub fn finish_blocking(&self, db: &Db) -> DbResult<()> {
        self.flush_blocking(db)?;
        self.fold_blocking(db, Fold::All)?;
        while self.write_last_used_blocking(db)? > 0 {}
        Ok(())
    }

    /// Tells the recorder when keys were last marked used in the database (read at start), so
    /// a restart does not rewrite every key's "last used" at once.
    pub fn known_last_used(&self, known: impl IntoIterator<Item = (i64, NaiveDateTime)>) {
        let mut written = lock(&self.last_used_written);
        for (id, at) in known {
            written.entry(id).or_insert(at);
        }
    }

    /// Notes the keys whose "last used" is due to be written: never written by this instance,
    /// or last written a minute or more before their latest use. Kept apart from folding, which
    /// counts uses exactly and must stay short; a crash loses only these moves.
    fn note_last_used(&self, uses: &[KeyUse]) {
        let mut written = lock(&self.last_used_written);
        if written.len() > 1_000_000 {
            written.clear();
        }
        let mut due = lock(&self.last_used_due);
        for (id, (at, ip)) in latest_use_per_key(uses) {
            if written.get(&id).is_none_or(|w| (at - *w).num_seconds() >= LAST_USED_GRANULARITY_SECONDS) {
                written.insert(id, at);
                due.note(id, at, ip);
            }
        }
    }

    /// Writes up to `marks_per_write` due "last used" moves in one transaction; returns how
    /// many are still due.
    pub fn write_last_used_blocking(&self, db: &Db) -> DbResult<usize> {
        let marks = lock(&self.last_used_due).take_oldest(marks_per_write(db));
        if marks.is_empty() {
            return Ok(0);
        }
        if let Err(e) = db.write_quietly(|conn| crate::db::usage::mark_last_used(conn, &marks)) {
            let mut due = lock(&self.last_used_due);
            for (id, at, ip) in marks {
                due.note(id, at, ip);
            }
            return Err(e);
        }
        Ok(lock(&self.last_used_due).len())
    }
}

/// Takes the oldest pending batches if the log's length (in uses) is `due`, and merges them:
/// folded at once if they fit in one transaction, otherwise written back as pieces. Returns
/// what was done and whether batches were left behind.
fn merge_due_batches(conn: &mut crate::db::DbConn, due: impl Fn(i64) -> bool) -> DbResult<Option<(FoldStep, bool)>> {
    let (batches, uses) = crate::db::usage::backlog(conn)?;
    if batches == 0 || !due(uses) {
        return Ok(None);
    }
    let taken = crate::db::usage::take_pending(conn, BATCHES_PER_FOLD)?;
    if taken.is_empty() {
        return Ok(None); // another instance is folding them
    }
    let mut merged = Merged::default();
    let mut ids = Vec::with_capacity(taken.len());
    let mut read = 0;
    for id in taken {
        let batch = crate::db::usage::pending_batch(conn, id)?;
        read += (batch.len() / crate::db::usage::RECORD) as i64;
        merged.add(crate::db::usage::unpack(&batch));
        ids.push(id);
        if merged.len() >= MAX_MERGED || read >= MAX_READ_USES {
            break;
        }
    }
    let merged = merged.into_sorted();
    let step = if merged.len() <= PIECE_ROWS {
        crate::db::usage::add_uses(conn, &merged)?;
        FoldStep::Folded(merged)
    } else {
        let pieces =
            merged.chunks(PIECE_ROWS).map(|piece| crate::db::usage::append(conn, piece)).collect::<DbResult<_>>()?;
        FoldStep::Merged(pieces)
    };
    crate::db::usage::remove_pending(conn, &ids)?;
    Ok(Some((step, batches > ids.len())))
}

/// Folds one piece of a merged fold, unless another instance has folded it meanwhile.
fn fold_piece(conn: &mut crate::db::DbConn, piece: i64) -> DbResult<Vec<KeyUse>> {
    if !crate::db::usage::claim_pending(conn, piece)? {
        return Ok(Vec::new());
    }
    let uses: Vec<KeyUse> = crate::db::usage::unpack(&crate::db::usage::pending_batch(conn, piece)?).collect();
    crate::db::usage::add_uses(conn, &uses)?;
    crate::db::usage::remove_pending(conn, &[piece])?;
    Ok(uses)
}

/// "Last used" moves waiting to be written, first due first written, so that under sustained
/// load no key waits behind others that keep falling due.
#[derive(Default)]
struct DueMarks {
    latest: FastMap<i64, (NaiveDateTime, IpAddr)>,
    order: std::collections::VecDeque<i64>,
}

impl DueMarks {
    /// A key's latest use is due; a key already waiting keeps its place and takes the later use.
    fn note(&mut self, id: i64, at: NaiveDateTime, ip: IpAddr) {
        match self.latest.entry(id) {
            std::collections::hash_map::Entry::Occupied(mut waiting) => {
                if at >= waiting.get().0 {
                    waiting.insert((at, ip));
                }
            }
            std::collections::hash_map::Entry::Vacant(new) => {
                new.insert((at, ip));
                self.order.push_back(id);
            }
        }
    }

    /// The `n` longest due, in key order (neighbouring rows share pages).
    fn take_oldest(&mut self, n: usize) -> Vec<(i64, NaiveDateTime, IpAddr)> {
        let mut marks: Vec<(i64, NaiveDateTime, IpAddr)> = Vec::with_capacity(n.min(self.order.len()));
        while marks.len() < n {
            let Some(id) = self.order.pop_front() else { break };
            if let Some((at, ip)) = self.latest.remove(&id) {
                marks.push((id, at, ip));
            }
        }
        marks.sort_unstable_by_key(|(id, _, _)| *id);
        marks
    }

    fn len(&self) -> usize {
        self.latest.len()
    }
}

/// Uses merged to one row per (key, agent, address).
#[derive(Default)]
struct Merged(FastMap<(i64, i64, IpAddr), Pending>);

impl Merged {
    fn add(&mut self, uses: impl Iterator<Item = KeyUse>) {
        for u in uses {
            let p = Pending { first_seen: u.first_seen, last_seen: u.last_seen, hits: u.hits };
            self.0.entry((u.key_id, u.agent_id, u.ip)).and_modify(|m| m.merge(p)).or_insert(p);
        }
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    /// In key order, so that neighbouring upserts share pages.
    fn into_sorted(self) -> Vec<KeyUse> {
        let mut rows: Vec<KeyUse> = self
            .0
            .into_iter()
            .map(|((key_id, agent_id, ip), p)| KeyUse {
                key_id,
                agent_id,
                ip,
                first_seen: p.first_seen,
                last_seen: p.last_seen,
                hits: p.hits,
            })
            .collect();
        rows.sort_unstable_by_key(|u| (u.key_id, u.agent_id, u.ip));
        rows
    }
}

/// The threads that write usage in the background, apart from the blocking pool, so requests
/// waiting for the database never hold them up.
pub struct UsageWriter {
    stop: Vec<std::sync::mpsc::Sender<()>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl UsageWriter {
    /// Two threads: one appends every `FLUSH_EVERY`, the other folds when due, so a long fold
    /// never delays an append.
    pub fn spawn(recorder: Arc<UsageRecorder>, db: Db) -> std::io::Result<Self> {
        let mut writer = UsageWriter { stop: Vec::new(), threads: Vec::new() };
        let (r, d) = (recorder.clone(), db.clone());
        writer.every(FLUSH_EVERY, "usage-writer", move || {
            let started = Instant::now();
            match r.flush_blocking(&d) {
                Ok(0) => {}
                Ok(rows) => tracing::debug!(rows, ms = started.elapsed().as_millis() as u64, "usage appended"),
                Err(e) => tracing::warn!(error = %e, "writing usage failed; will retry"),
            }
        })?;
        writer.every(FLUSH_EVERY, "usage-folder", move || {
            let started = Instant::now();
            match recorder.fold_blocking(&db, Fold::WhenDue) {
                Ok(0) => {}
                Ok(rows) => tracing::debug!(rows, ms = started.elapsed().as_millis() as u64, "usage folded"),
                Err(e) => tracing::warn!(error = %e, "folding usage failed; will retry"),
            }
            if let Err(e) = recorder.write_last_used_blocking(&db) {
                tracing::warn!(error = %e, "writing keys' last use failed; will retry");
            }
        })?;
        Ok(writer)
    }

    fn every(&mut self, period: Duration, name: &str, mut work: impl FnMut() + Send + 'static) -> std::io::Result<()> {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new().name(name.into()).spawn(move || {
            let mut next = Instant::now() + period;
            loop {
                match stopped.recv_timeout(next.saturating_duration_since(Instant::now())) {
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                    _ => return,
                }
                next = Instant::now() + period;
                work();
            }
        })?;
        self.stop.push(stop);
        self.threads.push(thread);
        Ok(())
    }

    /// Stops the threads once their current write is done (blocks until then).
    pub fn stop(self) {
        for stop in &self.stop {
            let _ = stop.send(());
        }
        for thread in self.threads {
            let _ = thread.join();
        }
    }
}

fn latest_use_per_key(uses: &[KeyUse]) -> FastMap<i64, (NaiveDateTime, IpAddr)> {
    let mut latest: FastMap<i64, (NaiveDateTime, IpAddr)> = FastMap::default();
    for u in uses {
        let entry = latest.entry(u.key_id).or_insert((u.last_seen, u.ip));
        if u.last_seen > entry.0 {
            *entry = (u.last_seen, u.ip);
        }
    }
    latest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_marks_are_written_first_due_first_with_each_keys_latest_use() {
        let at = |s: i64| chrono::DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap().naive_utc();
        let (home, work): (IpAddr, IpAddr) = ("198.51.100.1".parse().unwrap(), "203.0.113.9".parse().unwrap());
        let mut due = DueMarks::default();
        due.note(30, at(1), home);
        due.note(10, at(2), home);
        due.note(20, at(3), home);
        due.note(30, at(4), work);
        due.note(30, at(0), home);
        assert_eq!(due.take_oldest(2), vec![(10, at(2), home), (30, at(4), work)]);
        due.note(5, at(5), home);
        assert_eq!(due.len(), 2);
        assert_eq!(due.take_oldest(10), vec![(5, at(5), home), (20, at(3), home)]);
        assert!(due.take_oldest(10).is_empty());
    }

    #[test]
    fn merged_uses_add_up_per_key_agent_and_address_in_key_order() {
        let at = |s: i64| chrono::DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap().naive_utc();
        let (home, work): (IpAddr, IpAddr) = ("198.51.100.1".parse().unwrap(), "203.0.113.9".parse().unwrap());
        let used = |key_id, agent_id, ip, first, last, hits| KeyUse {
            key_id,
            agent_id,
            ip,
            first_seen: at(first),
            last_seen: at(last),
            hits,
        };
        let mut merged = Merged::default();
        merged.add([used(9, 1, home, 5, 6, 2), used(3, 1, home, 1, 1, 1)].into_iter());
        merged.add([used(9, 1, home, 2, 3, 4), used(9, 1, work, 7, 7, 1), used(9, 2, home, 8, 8, 1)].into_iter());
        assert_eq!(merged.len(), 4);
        assert_eq!(
            merged.into_sorted(),
            vec![
                used(3, 1, home, 1, 1, 1),
                used(9, 1, home, 2, 6, 6),
                used(9, 1, work, 7, 7, 1),
                used(9, 2, home, 8, 8, 1)
            ]
        );
    }
}

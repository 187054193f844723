//! Recording use of keys, batched: uses are aggregated in memory per (key, agent, IP), appended
//! to a pending log in the database four times a second (one transaction, sequential writes),
//! and folded from there into the usage table in sorted batches — at once when the site is
//! quiet, every few seconds under load. Nothing is written per request.

mod summary;

pub use summary::{summarise, AgentUse};

use crate::db::usage::UsageDelta;
use crate::db::{Db, DbResult};
use chrono::NaiveDateTime;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Longest user agent kept; longer ones are cut so one client cannot bloat the log.
const MAX_AGENT_LEN: usize = 512;

/// A key's "last used" is written at most this often, as Moodle writes a token's lastaccess;
/// the usage log itself stays exact.
const LAST_USED_GRANULARITY_SECONDS: i64 = 60;

/// How often the writer thread appends what is pending: a crash loses at most about this much.
pub const FLUSH_EVERY: Duration = Duration::from_millis(250);

/// A pending log at most this long is folded at once, so usage shows on pages straight away
/// when the site is not busy.
const SMALL_BACKLOG: i64 = 5_000;

/// Under load the log is folded this often: the longer the wait, the more uses of each key are
/// folded in one sorted pass, and the fewer pages of key_usage are rewritten.
const FOLD_EVERY: Duration = Duration::from_secs(10);

/// Pending rows folded per transaction, so the writer is not held for long.
const FOLD_CHUNK: i64 = 100_000;

#[derive(Default)]
pub struct UsageRecorder {
    /// Keyed by (key, address) so that recording a use allocates nothing once the agent is known.
    pending: Mutex<HashMap<(i64, IpAddr), Vec<(String, Pending)>>>,
    /// When this instance last wrote each key's "last used".
    last_used_written: Mutex<HashMap<i64, NaiveDateTime>>,
    /// "Last used" moves due, written once the uses behind them are folded.
    last_used_due: Mutex<HashMap<i64, (NaiveDateTime, String)>>,
    /// User agents' numbers in `user_agents`.
    agent_ids: Mutex<HashMap<String, i64>>,
    folding: Mutex<FoldState>,
}

#[derive(Default)]
struct FoldState {
    last_fold: Option<Instant>,
    /// A fold ran out of its chunk with more to do: the next tick goes on at once.
    catching_up: bool,
}

/// When the pending log is folded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fold {
    /// One chunk, if the log is small or the interval has passed (the writer thread's tick).
    WhenDue,
    /// Only if the log is small (before a page reads usage).
    IfSmall,
    /// Everything (shutdown).
    All,
}

struct Pending {
    first_seen: NaiveDateTime,
    last_seen: NaiveDateTime,
    hits: i64,
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

impl UsageRecorder {
    pub fn record(&self, key_id: i64, user_agent: &str, ip: IpAddr, at: NaiveDateTime) {
        self.add(key_id, kept_agent(user_agent), ip, Pending { first_seen: at, last_seen: at, hits: 1 });
    }

    fn add(&self, key_id: i64, agent: &str, ip: IpAddr, uses: Pending) {
        let mut pending = lock(&self.pending);
        let agents = pending.entry((key_id, ip)).or_default();
        match agents.iter_mut().find(|(a, _)| a == agent) {
            Some((_, p)) => {
                p.hits += uses.hits;
                p.first_seen = p.first_seen.min(uses.first_seen);
                p.last_seen = p.last_seen.max(uses.last_seen);
            }
            None => agents.push((agent.to_owned(), uses)),
        }
    }

    fn take(&self) -> Vec<UsageDelta> {
        let drained = std::mem::take(&mut *lock(&self.pending));
        drained
            .into_iter()
            .flat_map(|((key_id, ip), agents)| {
                agents.into_iter().map(move |(user_agent, p)| UsageDelta {
                    key_id,
                    user_agent,
                    ip: ip.to_string(),
                    first_seen: p.first_seen,
                    last_seen: p.last_seen,
                    hits: p.hits,
                })
            })
            .collect()
    }

    /// Appends what is pending to the database's pending log. On failure the uses are put
    /// back, to be retried next time.
    pub fn flush_blocking(&self, db: &Db) -> DbResult<usize> {
        let deltas = self.take();
        if deltas.is_empty() {
            return Ok(0);
        }
        let unknown: Vec<&str> = {
            let known = lock(&self.agent_ids);
            let mut unknown: Vec<&str> = deltas.iter().map(|d| d.user_agent.as_str()).filter(|a| !known.contains_key(*a)).collect();
            unknown.sort_unstable();
            unknown.dedup();
            unknown
        };
        let written = db.write_quietly(|conn| {
            let mut ids = crate::db::usage::agent_ids(conn, &unknown)?;
            {
                let known = lock(&self.agent_ids);
                for d in &deltas {
                    if let Some(id) = known.get(&d.user_agent) {
                        ids.insert(d.user_agent.clone(), *id);
                    }
                }
            }
            crate::db::usage::append(conn, &deltas, &ids)?;
            Ok(ids)
        });
        match written {
            Ok(ids) => {
                let mut known = lock(&self.agent_ids);
                if known.len() > 100_000 {
                    known.clear();
                }
                known.extend(ids);
            }
            Err(e) => {
                for d in deltas {
                    self.restore(d);
                }
                return Err(e);
            }
        }
        let due = self.due_last_used(&deltas);
        let mut marks = lock(&self.last_used_due);
        for (id, at, ip) in due {
            let entry = marks.entry(id).or_insert((at, String::new()));
            if at >= entry.0 {
                *entry = (at, ip);
            }
        }
        Ok(deltas.len())
    }

    /// Folds the pending log into the usage table, as `how` says; returns the rows folded.
    pub fn fold_blocking(&self, db: &Db, how: Fold) -> DbResult<i64> {
        let mut state = lock(&self.folding);
        let mut folded = 0;
        loop {
            let step = db.write_quietly(|conn| {
                let Some((low, high)) = crate::db::usage::pending_span(conn)? else { return Ok(None) };
                let backlog = high - low + 1;
                let interval_passed = state.last_fold.is_none_or(|t| t.elapsed() >= FOLD_EVERY);
                let due = match how {
                    Fold::All => true,
                    Fold::IfSmall => backlog <= SMALL_BACKLOG,
                    Fold::WhenDue => backlog <= SMALL_BACKLOG || interval_passed || state.catching_up,
                };
                if !due {
                    return Ok(None);
                }
                let up_to = high.min(low + FOLD_CHUNK - 1);
                if !crate::db::usage::fold_pending(conn, up_to)? {
                    return Ok(None);
                }
                Ok(Some((up_to - low + 1, up_to < high)))
            })?;
            let Some((rows, more)) = step else { break };
            folded += rows;
            state.catching_up = more;
            if !more {
                state.last_fold = Some(Instant::now());
            }
            if !(more && how == Fold::All) {
                break;
            }
        }
        if folded > 0 && !state.catching_up {
            self.write_last_used(db)?;
        }
        Ok(folded)
    }

    /// Moves keys' "last used" forward for the uses folded so far.
    fn write_last_used(&self, db: &Db) -> DbResult<()> {
        let mut marks: Vec<(i64, NaiveDateTime, String)> =
            std::mem::take(&mut *lock(&self.last_used_due)).into_iter().map(|(id, (at, ip))| (id, at, ip)).collect();
        if marks.is_empty() {
            return Ok(());
        }
        marks.sort_unstable_by_key(|(id, _, _)| *id);
        if let Err(e) = db.write_quietly(|conn| crate::db::usage::mark_last_used(conn, &marks)) {
            // Written again at the key's next use.
            let mut written = lock(&self.last_used_written);
            for (id, _, _) in &marks {
                written.remove(id);
            }
            return Err(e);
        }
        Ok(())
    }

    /// Before a page reads usage: this instance's uses written, and folded unless the site is
    /// so busy that the log is long (then the page shows usage up to `FOLD_EVERY` old).
    pub async fn settle(self: &Arc<Self>, db: &Db) -> DbResult<()> {
        let (recorder, db) = (self.clone(), db.clone());
        actix_web::web::block(move || {
            recorder.flush_blocking(&db)?;
            recorder.fold_blocking(&db, Fold::IfSmall).map(|_| ())
        })
        .await
        .map_err(|_| crate::db::DbError::Cancelled)?
    }

    /// Everything written and folded (graceful shutdown).
    pub fn finish_blocking(&self, db: &Db) -> DbResult<()> {
        self.flush_blocking(db)?;
        self.fold_blocking(db, Fold::All)?;
        self.write_last_used(db)
    }

    /// Tells the recorder when keys were last marked used in the database (read at start), so
    /// a restart does not rewrite every key's "last used" at once.
    pub fn known_last_used(&self, known: impl IntoIterator<Item = (i64, NaiveDateTime)>) {
        let mut written = lock(&self.last_used_written);
        for (id, at) in known {
            written.entry(id).or_insert(at);
        }
    }

    /// The keys whose "last used" is due to be written: never written by this instance, or
    /// last written a minute or more before their latest use.
    fn due_last_used(&self, deltas: &[UsageDelta]) -> Vec<(i64, NaiveDateTime, String)> {
        let mut written = lock(&self.last_used_written);
        if written.len() > 1_000_000 {
            written.clear();
        }
        latest_use_per_key(deltas)
            .into_iter()
            .filter(|(id, (at, _))| {
                let due = written
                    .get(id)
                    .is_none_or(|w| (*at - *w).num_seconds() >= LAST_USED_GRANULARITY_SECONDS);
                if due {
                    written.insert(*id, *at);
                }
                due
            })
            .map(|(id, (at, ip))| (id, at, ip.to_owned()))
            .collect()
    }

    fn restore(&self, d: UsageDelta) {
        let ip = d.ip.parse().unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
        self.add(d.key_id, &d.user_agent, ip, Pending { first_seen: d.first_seen, last_seen: d.last_seen, hits: d.hits });
    }
}

/// The thread that writes usage in the background: appends every `FLUSH_EVERY`, folds when
/// due. Its own thread, not the blocking pool, so requests waiting for the database never
/// hold it up.
pub struct UsageWriter {
    stop: std::sync::mpsc::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl UsageWriter {
    pub fn spawn(recorder: Arc<UsageRecorder>, db: Db) -> std::io::Result<Self> {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new().name("usage-writer".into()).spawn(move || {
            let mut next = Instant::now() + FLUSH_EVERY;
            loop {
                match stopped.recv_timeout(next.saturating_duration_since(Instant::now())) {
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                    _ => return,
                }
                next = Instant::now() + FLUSH_EVERY;
                let started = Instant::now();
                match recorder.flush_blocking(&db) {
                    Ok(0) => {}
                    Ok(rows) => tracing::debug!(rows, ms = started.elapsed().as_millis() as u64, "usage appended"),
                    Err(e) => tracing::warn!(error = %e, "writing usage failed; will retry"),
                }
                let started = Instant::now();
                match recorder.fold_blocking(&db, Fold::WhenDue) {
                    Ok(0) => {}
                    Ok(rows) => tracing::debug!(rows, ms = started.elapsed().as_millis() as u64, "usage folded"),
                    Err(e) => tracing::warn!(error = %e, "folding usage failed; will retry"),
                }
            }
        })?;
        Ok(UsageWriter { stop, thread })
    }

    /// Stops the thread once its current write is done (blocks until then).
    pub fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.thread.join();
    }
}

fn latest_use_per_key(deltas: &[UsageDelta]) -> HashMap<i64, (NaiveDateTime, &str)> {
    let mut latest: HashMap<i64, (NaiveDateTime, &str)> = HashMap::new();
    for d in deltas {
        let entry = latest.entry(d.key_id).or_insert((d.last_seen, &d.ip));
        if d.last_seen > entry.0 {
            *entry = (d.last_seen, &d.ip);
        }
    }
    latest
}

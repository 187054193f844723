//! Recording use of keys, batched: uses are aggregated in memory per (key, agent, IP) and
//! flushed in one transaction every second and at shutdown, instead of a write per request.

mod summary;

pub use summary::{summarise, AgentUse};

use crate::db::usage::UsageDelta;
use crate::db::{Db, DbResult};
use chrono::NaiveDateTime;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

/// Longest user agent kept; longer ones are cut so one client cannot bloat the log.
const MAX_AGENT_LEN: usize = 512;

/// A key's "last used" is written at most this often, as Moodle writes a token's lastaccess;
/// the usage log itself stays exact.
const LAST_USED_GRANULARITY_SECONDS: i64 = 60;

#[derive(Default)]
pub struct UsageRecorder {
    /// Keyed by (key, address) so that recording a use allocates nothing once the agent is known.
    pending: Mutex<HashMap<(i64, IpAddr), Vec<(String, Pending)>>>,
    /// When this instance last wrote each key's "last used".
    last_used_written: Mutex<HashMap<i64, NaiveDateTime>>,
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

impl UsageRecorder {
    pub fn record(&self, key_id: i64, user_agent: &str, ip: IpAddr, at: NaiveDateTime) {
        self.add(key_id, kept_agent(user_agent), ip, Pending { first_seen: at, last_seen: at, hits: 1 });
    }

    fn add(&self, key_id: i64, agent: &str, ip: IpAddr, uses: Pending) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
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
        let drained = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()));
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

    /// Writes what is pending. On failure the uses are put back, to be retried next time.
    pub fn flush_blocking(&self, db: &Db) -> DbResult<usize> {
        let deltas = self.take();
        if deltas.is_empty() {
            return Ok(0);
        }
        // The counts first, in their own transaction, so they are durable as soon as possible.
        if let Err(e) = db.write_quietly(|conn| crate::db::usage::apply(conn, &deltas)) {
            for d in deltas {
                self.restore(d);
            }
            return Err(e);
        }
        let latest = self.due_last_used(&deltas);
        if let Err(e) = db.write_quietly(|conn| crate::db::usage::mark_last_used(conn, &latest)) {
            // Written again at the key's next use.
            let mut written = self.last_used_written.lock().unwrap_or_else(|p| p.into_inner());
            for (id, _, _) in &latest {
                written.remove(id);
            }
            return Err(e);
        }
        Ok(deltas.len())
    }

    /// Tells the recorder when keys were last marked used in the database (read at start), so
    /// a restart does not rewrite every key's "last used" at once.
    pub fn known_last_used(&self, known: impl IntoIterator<Item = (i64, NaiveDateTime)>) {
        let mut written = self.last_used_written.lock().unwrap_or_else(|p| p.into_inner());
        for (id, at) in known {
            written.entry(id).or_insert(at);
        }
    }

    /// The keys whose "last used" is due to be written: never written by this instance, or
    /// last written a minute or more before their latest use.
    fn due_last_used(&self, deltas: &[UsageDelta]) -> Vec<(i64, NaiveDateTime, String)> {
        let mut written = self.last_used_written.lock().unwrap_or_else(|p| p.into_inner());
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

    pub async fn flush(self: &std::sync::Arc<Self>, db: &Db) -> DbResult<usize> {
        let (recorder, db) = (self.clone(), db.clone());
        actix_web::web::block(move || recorder.flush_blocking(&db))
            .await
            .map_err(|_| crate::db::DbError::Cancelled)?
    }

    fn restore(&self, d: UsageDelta) {
        let ip = d.ip.parse().unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
        self.add(d.key_id, &d.user_agent, ip, Pending { first_seen: d.first_seen, last_seen: d.last_seen, hits: d.hits });
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

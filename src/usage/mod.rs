//! Recording use of keys, batched: uses are aggregated in memory per (key, agent, IP) and
//! flushed in one transaction every second and at shutdown, instead of a write per request.

mod summary;

pub use summary::{summarise, AgentUse};

use crate::db::usage::UsageDelta;
use crate::db::{Db, DbResult};
use chrono::NaiveDateTime;
use std::collections::HashMap;
use std::sync::Mutex;

/// Longest user agent kept; longer ones are cut so one client cannot bloat the log.
const MAX_AGENT_LEN: usize = 512;

#[derive(Default)]
pub struct UsageRecorder {
    pending: Mutex<HashMap<(i64, String, String), Pending>>,
}

struct Pending {
    first_seen: NaiveDateTime,
    last_seen: NaiveDateTime,
    hits: i64,
}

impl UsageRecorder {
    pub fn record(&self, key_id: i64, user_agent: &str, ip: &str, at: NaiveDateTime) {
        let agent: String = user_agent.chars().take(MAX_AGENT_LEN).collect();
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        pending
            .entry((key_id, agent, ip.to_owned()))
            .and_modify(|p| {
                p.hits += 1;
                p.last_seen = p.last_seen.max(at);
            })
            .or_insert(Pending { first_seen: at, last_seen: at, hits: 1 });
    }

    fn take(&self) -> Vec<UsageDelta> {
        let drained = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()));
        drained
            .into_iter()
            .map(|((key_id, user_agent, ip), p)| UsageDelta {
                key_id,
                user_agent,
                ip,
                first_seen: p.first_seen,
                last_seen: p.last_seen,
                hits: p.hits,
            })
            .collect()
    }

    /// Writes what is pending. On failure the uses are put back, to be retried next time.
    pub fn flush_blocking(&self, db: &Db) -> DbResult<usize> {
        let deltas = self.take();
        if deltas.is_empty() {
            return Ok(0);
        }
        let result = db.write_quietly(|conn| {
            crate::db::usage::apply(conn, &deltas)?;
            for (key_id, (at, ip)) in latest_use_per_key(&deltas) {
                crate::db::usage::mark_last_used(conn, key_id, at, ip)?;
            }
            Ok(())
        });
        match result {
            Ok(()) => Ok(deltas.len()),
            Err(e) => {
                for d in deltas {
                    self.restore(d);
                }
                Err(e)
            }
        }
    }

    pub async fn flush(self: &std::sync::Arc<Self>, db: &Db) -> DbResult<usize> {
        let (recorder, db) = (self.clone(), db.clone());
        actix_web::web::block(move || recorder.flush_blocking(&db))
            .await
            .map_err(|_| crate::db::DbError::Cancelled)?
    }

    fn restore(&self, d: UsageDelta) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        pending
            .entry((d.key_id, d.user_agent, d.ip))
            .and_modify(|p| {
                p.hits += d.hits;
                p.first_seen = p.first_seen.min(d.first_seen);
                p.last_seen = p.last_seen.max(d.last_seen);
            })
            .or_insert(Pending { first_seen: d.first_seen, last_seen: d.last_seen, hits: d.hits });
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

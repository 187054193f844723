//! Recording use of keys, batched: uses are aggregated in memory per (key, agent, IP), appended
//! to a pending log in the database four times a second (one packed row per flush), and folded
//! from there into the usage table in sorted batches — at once when the site is quiet, every
//! 30 seconds under load. Nothing is written per request.

mod alerts;
mod flush;
mod fold;
mod last_used;
mod recorder;
mod summary;
mod writer;

pub use fold::Fold;
pub use summary::{summarise, AgentUse};
pub use writer::{UsageWriter, FLUSH_EVERY};

use chrono::NaiveDateTime;
use fold::FoldState;
use last_used::{DueMarks, MarksPace, WrittenMarks};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Maps on the path of every use: foldhash is several times quicker than SipHash on agents'
/// long strings, and seeded per process, so clients cannot aim collisions at it.
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

const SHARDS: usize = 16;

/// Uses recorded and not yet written, with the state of the jobs that write them: each job
/// (`flush`, `fold`, `last_used`) adds its methods in its own file.
#[derive(Default)]
pub struct UsageRecorder {
    /// Split by the thread that records (see `recorder`), so request threads do not share them.
    pending: [Mutex<recorder::Shard>; SHARDS],
    /// When this instance last wrote each key's "last used".
    last_used_written: Mutex<WrittenMarks>,
    /// "Last used" moves due, for keys whose uses are folded, written a thousand at a time.
    last_used_due: Mutex<DueMarks>,
    /// When the background writer may write marks next.
    last_used_pace: Mutex<MarksPace>,
    /// User agents' numbers in `user_agents`.
    agent_ids: Mutex<FastMap<String, i64>>,
    folding: Mutex<FoldState>,
    /// Key types whose new clients are news to their owners (see `alerts`).
    alerting: Vec<String>,
}

impl UsageRecorder {
    /// A recorder that notes new clients of keys of these types as it folds.
    pub fn alerting_on(types: Vec<String>) -> Self {
        UsageRecorder { alerting: types, ..Default::default() }
    }
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

impl From<&crate::db::usage::KeyUse> for Pending {
    fn from(u: &crate::db::usage::KeyUse) -> Self {
        Pending { first_seen: u.first_seen, last_seen: u.last_seen, hits: u.hits }
    }
}

/// What the recorder holds in memory, in entries (and table sizes where they stay allocated),
/// for the benchmark.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct RecorderStats {
    pub pending: usize,
    pub last_used_written: usize,
    pub last_used_written_capacity: usize,
    pub last_used_due: usize,
    /// Uses whose "last used" mark was passed over since the start, too many being due.
    pub last_used_passed_over: u64,
    pub agents: usize,
}

impl UsageRecorder {
    pub fn stats(&self) -> RecorderStats {
        let written = lock(&self.last_used_written);
        RecorderStats {
            pending: self.pending.iter().map(|shard| lock(shard).len()).sum(),
            last_used_written: written.len(),
            last_used_written_capacity: written.capacity(),
            last_used_due: lock(&self.last_used_due).len(),
            last_used_passed_over: self.marks_passed_over(),
            agents: lock(&self.agent_ids).len(),
        }
    }
}

/// The pause after background work that took `took`, which keeps that work to `share_percent`
/// of its thread's time under sustained load.
fn pause_for_share(took: Duration, share_percent: u32) -> Duration {
    took * (100 - share_percent) / share_percent
}

/// Background work held to a share of its thread's time: after each run it rests.
#[derive(Default)]
struct Pace {
    not_before: Option<Instant>,
}

impl Pace {
    /// Whether the rest after the last run is still going on.
    fn resting(&self) -> bool {
        self.rest_left() > Duration::ZERO
    }

    /// What is left of the rest.
    fn rest_left(&self) -> Duration {
        self.not_before.map_or(Duration::ZERO, |t| t.saturating_duration_since(Instant::now()))
    }

    /// Rests after a run that took `took`, to keep to `share_percent` of the thread's time.
    fn rest_after(&mut self, took: Duration, share_percent: u32) {
        self.not_before = Some(Instant::now() + pause_for_share(took, share_percent));
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

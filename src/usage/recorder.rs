//! The in-memory recorder: uses aggregated per (key, agent, address) in shards, until a flush
//! takes them.

use super::fold::FoldState;
use super::last_used::DueMarks;
use chrono::NaiveDateTime;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

/// Maps on the path of every use: foldhash is several times quicker than SipHash on agents'
/// long strings, and seeded per process, so clients cannot aim collisions at it.
pub(super) type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Longest user agent kept; longer ones are cut so one client cannot bloat the log.
const MAX_AGENT_LEN: usize = 512;

const SHARDS: usize = 16;

#[derive(Default)]
pub struct UsageRecorder {
    /// Keyed by (key, address) so that recording a use allocates nothing once the agent is known;
    /// split by key into shards, so that request threads seldom wait for each other.
    pending: [Mutex<FastMap<(i64, IpAddr), Vec<(String, Pending)>>>; SHARDS],
    /// When this instance last wrote each key's "last used".
    pub(super) last_used_written: Mutex<FastMap<i64, NaiveDateTime>>,
    /// "Last used" moves due, for keys whose uses are folded, written a thousand at a time.
    pub(super) last_used_due: Mutex<DueMarks>,
    /// User agents' numbers in `user_agents`.
    pub(super) agent_ids: Mutex<FastMap<String, i64>>,
    pub(super) folding: Mutex<FoldState>,
}

#[derive(Clone, Copy)]
pub(super) struct Pending {
    pub(super) first_seen: NaiveDateTime,
    pub(super) last_seen: NaiveDateTime,
    pub(super) hits: i64,
}

impl Pending {
    pub(super) fn merge(&mut self, other: Pending) {
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

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub(super) type Taken = Vec<((i64, IpAddr), Vec<(String, Pending)>)>;

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

    pub(super) fn take(&self) -> Taken {
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

    pub(super) fn restore(&self, taken: Taken) {
        for ((key_id, ip), agents) in taken {
            for (agent, uses) in agents {
                self.add(key_id, &agent, ip, uses);
            }
        }
    }
}

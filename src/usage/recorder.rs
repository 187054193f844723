//! The in-memory recorder: uses aggregated per (key, agent, address) in shards, until a flush
//! takes them.

use super::{lock, FastMap, Pending, UsageRecorder, SHARDS};
use chrono::NaiveDateTime;
use std::net::IpAddr;

/// Longest user agent kept; longer ones are cut so one client cannot bloat the log.
const MAX_AGENT_LEN: usize = 512;

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

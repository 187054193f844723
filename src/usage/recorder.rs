//! The in-memory recorder: uses aggregated per (key, agent, address) in shards, until a flush
//! takes them.

use super::{lock, FastMap, Pending, UsageRecorder, SHARDS};
use chrono::NaiveDateTime;
use std::net::IpAddr;
use std::sync::Mutex;

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

/// Uses not yet written, of the keys of one shard.
#[derive(Default)]
pub(super) struct Shard {
    /// Per (key, address, agent), the agent by its number in `agents`: a use of a key not yet
    /// seen since the last flush, the usual case on a site of many keys, allocates nothing once
    /// its agent is known.
    pub(super) uses: FastMap<(i64, IpAddr, u32), Pending>,
    /// The agents of these uses, numbered in the order they came.
    pub(super) agents: FastMap<Box<str>, u32>,
}

impl Shard {
    pub(super) fn len(&self) -> usize {
        self.uses.len()
    }

    fn add(&mut self, key_id: i64, agent: &str, ip: IpAddr, uses: Pending) {
        let next = self.agents.len() as u32;
        let agent = match self.agents.get(agent) {
            Some(n) => *n,
            None => *self.agents.entry(agent.into()).or_insert(next),
        };
        self.uses.entry((key_id, ip, agent)).and_modify(|p| p.merge(uses)).or_insert(uses);
    }

    /// The agents by their numbers.
    pub(super) fn agent_names(&self) -> Vec<&str> {
        let mut names = vec![""; self.agents.len()];
        for (name, n) in &self.agents {
            names[*n as usize] = name;
        }
        names
    }
}

pub(super) type Taken = Vec<Shard>;

impl UsageRecorder {
    pub fn record(&self, key_id: i64, user_agent: &str, ip: IpAddr, at: NaiveDateTime) {
        let uses = Pending { first_seen: at, last_seen: at, hits: 1 };
        lock(self.own_shard()).add(key_id, kept_agent(user_agent), ip, uses);
    }

    /// The calling thread's shard: each request thread records into one of its own (while
    /// there are no more threads than shards), so a use writes memory no other core is writing.
    /// Sharded by key, both cores took the same shards' locks and wrote the same tables, and
    /// those cache lines moved between them on about every other call. A key used on two
    /// threads within one flush is in two shards; the fold adds the two up.
    fn own_shard(&self) -> &Mutex<Shard> {
        &self.pending[crate::thread_stripe::own(SHARDS)]
    }

    pub(super) fn take(&self) -> Taken {
        // Each shard starts again with the room it needed last time, sparing the hot path regrowth.
        self.pending
            .iter()
            .map(|shard| {
                let mut shard = lock(shard);
                let room = Shard {
                    uses: FastMap::with_capacity_and_hasher(shard.uses.len(), Default::default()),
                    agents: FastMap::with_capacity_and_hasher(shard.agents.len(), Default::default()),
                };
                std::mem::replace(&mut *shard, room)
            })
            .filter(|taken| taken.len() > 0)
            .collect()
    }

    pub(super) fn restore(&self, taken: Taken) {
        let mut pending = lock(self.own_shard());
        for shard in taken {
            let names = shard.agent_names();
            for ((key_id, ip, agent), uses) in &shard.uses {
                pending.add(*key_id, names[*agent as usize], *ip, *uses);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uses_add_up_per_key_address_and_agent_and_come_back_after_a_failed_write() {
        let recorder = UsageRecorder::default();
        let at = |s: i64| chrono::DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap().naive_utc();
        let (home, work): (IpAddr, IpAddr) = ("198.51.100.1".parse().unwrap(), "203.0.113.9".parse().unwrap());
        recorder.record(7, "MoodleMobile", home, at(3));
        recorder.record(7, "MoodleMobile", home, at(1));
        recorder.record(7, "curl/8.5.0", home, at(2));
        recorder.record(7, "MoodleMobile", work, at(4));
        std::thread::scope(|s| {
            // Another request thread, another shard.
            s.spawn(|| recorder.record(7 + SHARDS as i64, "MoodleMobile", home, at(5)));
        });
        let long = "x".repeat(2 * MAX_AGENT_LEN);
        recorder.record(9, &long, home, at(6));

        let seen = |taken: &Taken| {
            let mut seen: Vec<(i64, IpAddr, String, i64, i64, i64)> = taken
                .iter()
                .flat_map(|shard| {
                    let names = shard.agent_names();
                    shard.uses.iter().map(move |(&(key, ip, agent), p)| {
                        let name = names[agent as usize].to_owned();
                        (key, ip, name, p.hits, p.first_seen.and_utc().timestamp(), p.last_seen.and_utc().timestamp())
                    })
                })
                .collect();
            seen.sort();
            seen
        };
        let taken = recorder.take();
        let expected = vec![
            (7, home, "MoodleMobile".to_owned(), 2, 1_700_000_001, 1_700_000_003),
            (7, home, "curl/8.5.0".to_owned(), 1, 1_700_000_002, 1_700_000_002),
            (7, work, "MoodleMobile".to_owned(), 1, 1_700_000_004, 1_700_000_004),
            (9, home, "x".repeat(MAX_AGENT_LEN), 1, 1_700_000_006, 1_700_000_006),
            (7 + SHARDS as i64, home, "MoodleMobile".to_owned(), 1, 1_700_000_005, 1_700_000_005),
        ];
        let mut sorted = expected.clone();
        sorted.sort();
        assert_eq!(seen(&taken), sorted);
        assert_eq!(recorder.stats().pending, 0, "taken uses leave the recorder");

        // A write that failed puts them back, and they merge with uses recorded meanwhile.
        recorder.record(7, "curl/8.5.0", home, at(8));
        recorder.restore(taken);
        let again = seen(&recorder.take());
        let curl = again.iter().find(|u| u.0 == 7 && u.2 == "curl/8.5.0").unwrap();
        assert_eq!((curl.3, curl.4, curl.5), (2, 1_700_000_002, 1_700_000_008));
        assert_eq!(again.len(), expected.len());
    }
}

//! The flush: what is pending in memory appended to the database's pending log, as one row.

use super::{lock, UsageRecorder};
use crate::db::usage::KeyUse;
use crate::db::{Db, DbResult};
use std::collections::HashMap;
use std::time::Duration;

impl UsageRecorder {
    /// Appends what is pending to the database's pending log, as one row. On failure the uses
    /// are put back, to be retried next time.
    pub fn flush_blocking(&self, db: &Db) -> DbResult<usize> {
        self.flush_within(db, None).map(|n| n.unwrap_or(0))
    }

    /// Flushes, but gives up (`None`, the uses kept) if the writer is not free within `wait`.
    pub(super) fn flush_within(&self, db: &Db, wait: Option<Duration>) -> DbResult<Option<usize>> {
        let taken = self.take();
        if taken.is_empty() {
            return Ok(Some(0));
        }
        let names: Vec<Vec<&str>> = taken.iter().map(|shard| shard.agent_names()).collect();
        let unknown: Vec<&str> = {
            let known = lock(&self.agent_ids);
            let mut unknown: Vec<&str> = names.iter().flatten().copied().filter(|a| !known.contains_key(*a)).collect();
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
                let mut uses = Vec::with_capacity(taken.iter().map(|shard| shard.len()).sum());
                for (shard, names) in taken.iter().zip(&names) {
                    let ids: Vec<Option<i64>> = names.iter().map(|name| known.get(*name).copied()).collect();
                    for (&(key_id, ip, agent), p) in &shard.uses {
                        let Some(agent_id) = ids[agent as usize] else { continue };
                        uses.push(KeyUse {
                            key_id,
                            agent_id,
                            ip,
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
}

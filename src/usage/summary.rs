//! Usage per key summarised by agent, in words: "Google Calendar — 1 day ago from 203.0.113.4".

use crate::db::models::UsageRow;
use crate::domain::user_agent::describe_user_agent;
use chrono::NaiveDateTime;
use std::collections::HashMap;

#[derive(Clone, Debug, serde::Serialize)]
pub struct AgentUse {
    pub agent: String,
    pub last_seen: NaiveDateTime,
    pub last_ip: String,
    pub hits: i64,
}

/// Groups a key's usage rows by the agent's readable name, most recent first. Rows whose raw
/// agent strings read the same ("Chrome 120 · Windows") are one line.
pub fn summarise(rows: &[UsageRow]) -> HashMap<i64, Vec<AgentUse>> {
    let mut per_key: HashMap<i64, HashMap<String, AgentUse>> = HashMap::new();
    let mut names: HashMap<&str, String> = HashMap::new();
    for row in rows {
        let agent = names.entry(&row.user_agent).or_insert_with(|| describe_user_agent(&row.user_agent)).clone();
        let uses = per_key.entry(row.key_id).or_default();
        let entry = uses.entry(agent.clone()).or_insert_with(|| AgentUse {
            agent,
            last_seen: row.last_seen,
            last_ip: row.ip.clone(),
            hits: 0,
        });
        entry.hits += row.hits;
        if row.last_seen > entry.last_seen {
            entry.last_seen = row.last_seen;
            entry.last_ip = row.ip.clone();
        }
    }
    per_key
        .into_iter()
        .map(|(key_id, uses)| {
            let mut list: Vec<AgentUse> = uses.into_values().collect();
            list.sort_by(|a, b| b.last_seen.cmp(&a.last_seen));
            (key_id, list)
        })
        .collect()
}

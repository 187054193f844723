//! New-client alerts, found as usage is folded: among the (key, agent, address) rows a fold
//! creates, those of keys whose type alerts (`KeyPolicy::alerts_on_new_client`) are compared
//! with what the key was used by and from before (`domain::new_client`), and news becomes an
//! alert in the same transaction, so a use is folded and its alert written together or not at all.

use crate::db::client_alerts::NewClientAlert;
use crate::db::usage::KeyUse;
use crate::db::{DbConn, DbResult};
use crate::domain::new_client::{news, Novelty};
use crate::domain::user_agent::describe_user_agent;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;

/// Writes an alert for each use in `created` (rows the fold just created) that is news to its
/// key: a client, or a network, the key had not been used by or from, when it had been used
/// before. Keys of types not in `alerting` are skipped without a read.
pub(super) fn note_new_clients(conn: &mut DbConn, created: &[KeyUse], alerting: &[String]) -> DbResult<usize> {
    if created.is_empty() || alerting.is_empty() {
        return Ok(0);
    }
    let mut per_key: BTreeMap<i64, Vec<&KeyUse>> = BTreeMap::new();
    for u in created {
        per_key.entry(u.key_id).or_default().push(u);
    }
    let ids: Vec<i64> = per_key.keys().copied().collect();
    // Each key's rows, the fresh ones among them: a key this fold created rows for has rows.
    let rows = crate::db::usage::clients_of_live_keys(conn, &ids, alerting)?;
    if rows.is_empty() {
        return Ok(0);
    }
    let owners: BTreeMap<i64, i64> = rows.iter().map(|(key_id, user_id, _, _)| (*key_id, *user_id)).collect();
    let alerting_ids: Vec<i64> = owners.keys().copied().collect();
    // What each key was used by and from before: its rows but those this fold created.
    let fresh: HashSet<(i64, i64, IpAddr)> = created.iter().map(KeyUse::row).collect();
    let mut before: BTreeMap<i64, Vec<(i64, IpAddr)>> = BTreeMap::new();
    for (key_id, _, agent_id, ip) in rows {
        let Ok(ip) = ip.parse::<IpAddr>() else { continue };
        if !fresh.contains(&(key_id, agent_id, ip)) {
            before.entry(key_id).or_default().push((agent_id, ip));
        }
    }
    // Each agent named once, however many rows use it.
    let mut agent_ids: HashSet<i64> = before.values().flatten().map(|(agent_id, _)| *agent_id).collect();
    agent_ids.extend(alerting_ids.iter().flat_map(|id| per_key[id].iter().map(|u| u.agent_id)));
    let mut agent_ids: Vec<i64> = agent_ids.into_iter().collect();
    agent_ids.sort_unstable();
    let names: HashMap<i64, String> = crate::db::usage::agents_named(conn, &agent_ids)?
        .into_iter()
        .map(|(id, agent)| (id, describe_user_agent(&agent)))
        .collect();
    let name_of = |agent_id: i64| names.get(&agent_id).map_or("", String::as_str);
    let now = crate::domain::time::now();
    let mut alerts = Vec::new();
    for (key_id, user_id) in owners {
        let Some(mut new_uses) = per_key.remove(&key_id) else { continue };
        new_uses.sort_by_key(|u| (u.first_seen, u.agent_id, u.ip));
        let before = before.remove(&key_id).unwrap_or_default();
        let named: Vec<(&str, IpAddr)> = new_uses.iter().map(|u| (name_of(u.agent_id), u.ip)).collect();
        let verdicts = news(before.iter().map(|(agent_id, ip)| (name_of(*agent_id), *ip)), named.iter().copied());
        for ((u, (name, ip)), novelty) in new_uses.iter().zip(&named).zip(verdicts) {
            if let Some(novelty) = novelty {
                alerts.push(NewClientAlert {
                    key_id,
                    user_id,
                    agent: (*name).to_owned(),
                    ip: ip.to_string(),
                    new_client: novelty == Novelty::Client,
                    first_seen: u.first_seen,
                    created_at: now,
                });
            }
        }
    }
    crate::db::client_alerts::insert(conn, &alerts)?;
    Ok(alerts.len())
}

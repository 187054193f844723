//! Keys unused too long expire by themselves: for each type the site names in
//! `USERKEYS_EXPIRE_UNUSED_DAYS`, a key unused for that many days (since its last use, or since
//! it was made) is revoked by the background upkeep through the usual revocation — audited,
//! "expired unused", dropped from every cache — and its owner's page says beforehand by when.

use super::Core;
use crate::db::unused_keys::{self, Cursor};
use crate::db::{usage, DbConn, DbResult};
use crate::domain::time::now;
use crate::keys::ops::{self, Actor, Revocation, Scope};
use chrono::{Duration, NaiveDateTime};
use std::collections::HashMap;

/// The reason recorded for a key revoked because it was unused too long.
pub const EXPIRED_UNUSED: &str = "expired unused";

/// Keys one transaction of the job looks at.
const BATCH: i64 = 500;

/// Where the job's walks over each type's keys have got to: a key passed over is one that can
/// never become due again along that walk, so each run reads only keys that aged past the
/// limit since the one before (the first run after a start reads each type's old keys once).
#[derive(Default)]
pub struct UnusedWalks {
    never_used: HashMap<String, Cursor>,
    last_used: HashMap<String, Cursor>,
}

impl Core {
    /// When a key revoked if unused will be, if its type's keys expire unused: its last use (or
    /// its creation) plus the type's days.
    pub fn expires_unused_at(
        &self,
        key_type: &str,
        created_at: NaiveDateTime,
        last_used_at: Option<NaiveDateTime>,
    ) -> Option<NaiveDateTime> {
        let days = self.config.expire_unused_days.days_for(key_type)?;
        Some(last_used_at.unwrap_or(created_at).max(created_at) + Duration::days(days))
    }

    /// The types whose unused keys expire, with their limit before `now + within` — the limit
    /// passes before then for keys unused since before it: what the admin's filter asks for.
    pub fn unused_expiry_thresholds(&self, within_days: i64, now: NaiveDateTime) -> Vec<(String, NaiveDateTime)> {
        self.config
            .expire_unused_days
            .0
            .iter()
            .map(|(t, days)| (t.clone(), now + Duration::days(within_days.clamp(0, 36_500)) - Duration::days(*days)))
            .collect()
    }

    /// Revokes every key unused past its type's limit, a batch per transaction; returns how
    /// many. Uses this instance recorded are written first, so a key in use is not taken for idle.
    pub fn expire_unused_keys_blocking(&self, walks: &mut UnusedWalks) -> DbResult<usize> {
        if self.config.expire_unused_days.0.is_empty() {
            return Ok(0);
        }
        self.usage.finish_blocking(&self.db)?;
        let mut revoked = 0;
        for (key_type, days) in self.config.expire_unused_days.0.clone() {
            for never_used in [true, false] {
                loop {
                    let after = *walk_of(walks, never_used).entry(key_type.clone()).or_insert_with(unused_keys::start);
                    let (registry, key_type2) = (self.registry.clone(), key_type.clone());
                    let (count, reached) = self.db.write_blocking(move |write| {
                        let now = now();
                        let before = now - Duration::days(days);
                        let (stale, reached) = if never_used {
                            unused_keys::never_used(write, &key_type2, before, after, now, BATCH)?
                        } else {
                            unused_keys::last_used_before(write, &key_type2, before, after, now, BATCH)?
                        };
                        let stale = not_used_since(write, stale, before)?;
                        let mut count = 0;
                        for (key_id, user_id) in stale {
                            let revocation = Revocation {
                                user_id,
                                selection: crate::db::keys::Selection::One(key_id),
                                scope: Scope::Everything,
                                actor: Actor::default(),
                                reason: EXPIRED_UNUSED.into(),
                            };
                            count += ops::revoke(write, &registry, &revocation, now)?;
                        }
                        Ok((count, reached.unwrap_or((before, -1))))
                    })?;
                    revoked += count;
                    let done = reached == after || reached.1 == -1;
                    walk_of(walks, never_used).insert(key_type.clone(), reached);
                    if done {
                        break;
                    }
                }
            }
        }
        if revoked > 0 {
            tracing::info!(revoked, "keys unused too long were revoked");
        }
        Ok(revoked)
    }
}

/// Of the keys whose "last used" is older than `before`, those the usage table has no later use
/// of. Under overload "last used" is written coarser than a minute and may lag behind the uses
/// folded; a key it lags for is marked now, which also moves it ahead of the walks' cursors.
fn not_used_since(conn: &mut DbConn, candidates: Vec<(i64, i64)>, before: NaiveDateTime) -> DbResult<Vec<(i64, i64)>> {
    let ids: Vec<i64> = candidates.iter().map(|(id, _)| *id).collect();
    let used_since: Vec<_> =
        usage::latest_folded_uses(conn, &ids)?.into_iter().filter(|(_, at, _)| *at >= before).collect();
    if used_since.is_empty() {
        return Ok(candidates);
    }
    usage::mark_last_used(conn, &used_since)?;
    let in_use: std::collections::HashSet<i64> = used_since.iter().map(|(id, _, _)| *id).collect();
    Ok(candidates.into_iter().filter(|(id, _)| !in_use.contains(id)).collect())
}

fn walk_of(walks: &mut UnusedWalks, never_used: bool) -> &mut HashMap<String, Cursor> {
    if never_used {
        &mut walks.never_used
    } else {
        &mut walks.last_used
    }
}

/// The background upkeep: every `USERKEYS_UPKEEP_SECONDS`, new-client alerts are mailed and
/// keys unused too long revoked, on a thread of its own (mail waits for an SMTP server).
pub struct Upkeep {
    stop: std::sync::mpsc::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Upkeep {
    pub fn spawn(core: std::sync::Arc<Core>) -> std::io::Result<Self> {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let period = std::time::Duration::from_secs(core.config.upkeep_seconds.max(1));
        let thread = std::thread::Builder::new().name("upkeep".into()).spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(runtime) => runtime,
                Err(e) => return tracing::error!(error = %e, "the upkeep thread could not start"),
            };
            let mut walks = UnusedWalks::default();
            loop {
                match stopped.recv_timeout(period) {
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                    _ => return,
                }
                if let Err(e) = runtime.block_on(core.mail_client_alerts()) {
                    tracing::warn!(error = %e, "mailing new-client alerts failed; will retry");
                }
                if let Err(e) = core.expire_unused_keys_blocking(&mut walks) {
                    tracing::warn!(error = %e, "revoking keys unused too long failed; will retry");
                }
            }
        })?;
        Ok(Upkeep { stop, thread })
    }

    /// Stops the thread once its current run is done.
    pub fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.thread.join();
    }
}

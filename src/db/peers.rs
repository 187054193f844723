//! Token caches of several instances on one PostgreSQL database, kept coherent so that a key
//! made invalid on one instance is refused by every other on the very next request.
//!
//! - A write that can make keys invalid takes the next generation (a row lock orders these
//!   writes) and announces what it affected with `NOTIFY`, inside its transaction, so the
//!   announcement exists exactly when the write commits.
//! - Each instance with a cache listens on its own connection, drops what an announcement names,
//!   then records the generation it has applied, with a heartbeat twice a second.
//! - After committing, the writer waits until every instance whose heartbeat is fresh has
//!   applied its generation, and only then answers.
//! - An instance uses its cache only within a lease: until `LEASE - MARGIN` after its last
//!   heartbeat was sent. A writer stops waiting for an instance `LEASE` after that heartbeat
//!   reached the database, so a stalled or cut-off instance has stopped trusting its cache by the
//!   time anyone stops waiting for it.

use super::{Db, DbConn, DbResult, Invalidation};
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CHANNEL: &str = "userkeys_cache";
const LEASE: Duration = Duration::from_secs(3);
const MARGIN: Duration = Duration::from_secs(1);
const BEAT_EVERY: Duration = Duration::from_millis(500);
/// How often the listener looks for announcements: the delay a revocation waits for.
const POLL_EVERY: Duration = Duration::from_millis(1);
/// Announcements longer than this name everything instead (NOTIFY carries under 8,000 bytes).
const MAX_PAYLOAD: usize = 7_000;

pub struct Peers {
    /// This instance, as other instances see it.
    id: String,
    url: String,
    started: Instant,
    /// Milliseconds since `started` until which the cache may be used; 0 while not listening.
    lease_until: AtomicU64,
}

#[derive(QueryableByName)]
struct Value {
    #[diesel(sql_type = BigInt)]
    value: i64,
}

impl Peers {
    pub fn new(url: &str) -> Self {
        Peers {
            id: crate::domain::secret::ClearSecret::token().expose().to_owned(),
            url: url.to_owned(),
            started: Instant::now(),
            lease_until: AtomicU64::new(0),
        }
    }

    fn millis(&self, at: Instant) -> u64 {
        at.duration_since(self.started).as_millis() as u64
    }

    /// Whether this instance is listening and its lease holds, so its cache is coherent.
    pub fn cache_usable(&self) -> bool {
        self.millis(Instant::now()) < self.lease_until.load(Ordering::Acquire)
    }

    /// Inside an invalidating write's transaction: takes the next generation and announces it.
    pub fn announce(&self, conn: &mut DbConn, what: &Invalidation) -> DbResult<i64> {
        let generation: Value =
            diesel::sql_query("UPDATE cache_generation SET value = value + 1 WHERE id = 1 RETURNING value")
                .get_result(conn)?;
        let mut payload = format!("{} {} {}", generation.value, self.id, describe(what));
        if payload.len() > MAX_PAYLOAD {
            payload = format!("{} {} all", generation.value, self.id);
        }
        diesel::sql_query("SELECT pg_notify($1, $2)")
            .bind::<Text, _>(CHANNEL)
            .bind::<Text, _>(payload)
            .execute(conn)?;
        Ok(generation.value)
    }

    /// After the write committed: waits until every other live instance has applied it.
    pub fn wait_for_peers(&self, db: &Db, generation: i64) -> DbResult<()> {
        let give_up = Instant::now() + LEASE + MARGIN;
        let mut conn = db.read.get()?;
        loop {
            let behind: Value = diesel::sql_query(
                "SELECT COUNT(*) AS value FROM cache_instances \
                 WHERE id <> $1 AND seen < $2 AND beat_at > now() - make_interval(secs => $3)",
            )
            .bind::<Text, _>(&self.id)
            .bind::<BigInt, _>(generation)
            .bind::<diesel::sql_types::Double, _>(LEASE.as_secs_f64())
            .get_result(&mut *conn)?;
            if behind.value == 0 {
                return Ok(());
            }
            if Instant::now() > give_up {
                tracing::warn!(
                    generation,
                    instances = behind.value,
                    "instances did not confirm an invalidation in time"
                );
                return Ok(());
            }
            std::thread::sleep(POLL_EVERY * 2);
        }
    }

    /// Listens for other instances' announcements and applies them to this instance's cache,
    /// reconnecting whenever the connection fails; runs for the life of the process.
    pub fn spawn_listener(self: Arc<Self>, db: Db) -> std::io::Result<()> {
        std::thread::Builder::new().name("cache-peers".into()).spawn(move || loop {
            if let Err(e) = self.listen(&db) {
                tracing::warn!(error = %e, "cache coherence connection lost; the token cache is off until it is back");
            }
            self.lease_until.store(0, Ordering::Release);
            db.apply_invalidation(&Invalidation::All);
            std::thread::sleep(Duration::from_secs(1));
        })?;
        Ok(())
    }

    fn listen(&self, db: &Db) -> DbResult<()> {
        let mut conn = PgConnection::establish(&self.url)?;
        conn.batch_execute(&format!("LISTEN {CHANNEL}"))?;
        let sent = Instant::now();
        let registered: Value = diesel::sql_query(
            "INSERT INTO cache_instances (id, seen, beat_at) \
             VALUES ($1, (SELECT value FROM cache_generation WHERE id = 1), now()) \
             ON CONFLICT (id) DO UPDATE SET seen = excluded.seen, beat_at = excluded.beat_at RETURNING seen AS value",
        )
        .bind::<Text, _>(&self.id)
        .get_result(&mut conn)?;
        // Announcements before the registration may have been missed: start from nothing.
        db.apply_invalidation(&Invalidation::All);
        let mut seen = registered.value;
        self.lease_until.store(self.millis(sent + LEASE - MARGIN), Ordering::Release);
        // Instances gone for an hour are forgotten.
        diesel::sql_query("DELETE FROM cache_instances WHERE beat_at < now() - interval '1 hour'")
            .execute(&mut conn)?;
        let mut last_beat = sent;
        loop {
            let mut applied = false;
            for notification in conn.notifications_iter() {
                let notification = notification?;
                match parse(&notification.payload) {
                    Some((generation, origin, what)) => {
                        if origin != self.id {
                            db.apply_invalidation(&what);
                        }
                        seen = seen.max(generation);
                        applied = true;
                    }
                    None => db.apply_invalidation(&Invalidation::All),
                }
            }
            if applied || last_beat.elapsed() >= BEAT_EVERY {
                let sent = Instant::now();
                diesel::sql_query(
                    "UPDATE cache_instances SET seen = GREATEST(seen, $2), beat_at = now() WHERE id = $1",
                )
                .bind::<Text, _>(&self.id)
                .bind::<BigInt, _>(seen)
                .execute(&mut conn)?;
                self.lease_until.store(self.millis(sent + LEASE - MARGIN), Ordering::Release);
                last_beat = sent;
            }
            std::thread::sleep(POLL_EVERY);
        }
    }
}

fn describe(what: &Invalidation) -> String {
    let ids = |ids: &[i64]| ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
    match what {
        Invalidation::All => "all".to_owned(),
        Invalidation::Keys(k) => format!("keys {}", ids(k)),
        Invalidation::Users(u) => format!("users {}", ids(u)),
    }
}

/// `generation origin what`; anything unreadable is taken as "all".
fn parse(payload: &str) -> Option<(i64, &str, Invalidation)> {
    let mut parts = payload.splitn(4, ' ');
    let generation = parts.next()?.parse().ok()?;
    let origin = parts.next()?;
    let ids = |s: Option<&str>| -> Option<Vec<i64>> { s?.split(',').map(|n| n.parse().ok()).collect() };
    let what = match parts.next() {
        Some("keys") => ids(parts.next()).map(Invalidation::Keys),
        Some("users") => ids(parts.next()).map(Invalidation::Users),
        _ => None,
    };
    Some((generation, origin, what.unwrap_or(Invalidation::All)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announcements_read_back_and_garbage_means_everything() {
        for what in [Invalidation::All, Invalidation::Keys(vec![3, 44]), Invalidation::Users(vec![7])] {
            let payload = format!("12 abc {}", describe(&what));
            assert_eq!(parse(&payload), Some((12, "abc", what)));
        }
        assert_eq!(parse("5 abc keys 1,x"), Some((5, "abc", Invalidation::All)));
        assert_eq!(parse("5 abc"), Some((5, "abc", Invalidation::All)));
        assert_eq!(parse("nonsense"), None);
    }
}

//! Keys' "last used" marks: moved at most once a minute per key, for uses folded for good, and
//! written a bounded number per transaction, first due first. Under a load of more keys in use
//! than the marks' share of time can move each minute, they grow coarser rather than take more
//! time or memory: the usage table still holds every use exactly, and the expiry of unused keys
//! reads it before it takes a key for idle.

use super::{lock, FastMap, UsageRecorder};
use crate::db::usage::KeyUse;
use crate::db::{Db, DbResult};
use crate::domain::time::to_unix;
use chrono::NaiveDateTime;
use std::net::IpAddr;
use std::time::Instant;

/// A key's "last used" is written at most this often, as Moodle writes a token's lastaccess;
/// the usage log itself stays exact.
const LAST_USED_GRANULARITY_SECONDS: i64 = 60;

/// Keys whose "last used" one transaction moves at most, four times a second: after a start
/// under load every key is due at once, and moving them all in one go would hold the writer for
/// seconds. On PostgreSQL each move writes a new version of the key's row of key_last_use and
/// of its three index entries (about 60 µs of the server's CPU), so it takes a thousand a
/// second, which leaves the database to the requests; with more than 60,000 keys in constant
/// use, their "last used" moves a little less often than once a minute.
fn marks_per_write(db: &Db) -> usize {
    match db.backend() {
        crate::db::Backend::Sqlite => 1_000,
        crate::db::Backend::Postgres => 250,
    }
}

/// Under sustained load, the background writer spends at most this share (in percent) of its
/// time on marks: each write of marks is followed by a pause of nine times its length. A mark
/// moves a row and an index entry at random places of tables as large as the site's keys (about
/// 150 µs a mark at 1,000,000 keys on SQLite); at four thousand a second they took a sixth of
/// the server's CPU from the requests. A quiet site's few marks are written at once.
const MARKS_SHARE_PERCENT: u32 = 10;

/// Most marks waiting to be written. With this many waiting, a use of a key that is not among
/// them is passed over, to be noted at a later use: "last used" grows coarser than a minute,
/// while memory stays bounded (about 60 bytes a mark, 3 MB). How many marks are written a
/// second is set by their share of the writer's time, not by how many wait: a longer list only
/// makes the marks older by the time they are written. (It held 200,000, and at 10,000,000
/// keys those 12 MB took the server past its cache's budget plus 100 MB.)
const MAX_DUE: usize = 50_000;

/// When the background writer may write marks next, and how many uses it passed over.
#[derive(Default)]
pub(super) struct MarksPace {
    pace: super::Pace,
    passed_over: u64,
}

impl UsageRecorder {
    /// Tells the recorder when keys were last marked used in the database (read at start), so
    /// a restart does not rewrite at once the marks it wrote just before. Only marks younger than
    /// the granularity are kept: an older one cannot hold back the next use's write.
    pub fn known_last_used(&self, known: impl IntoIterator<Item = (i64, NaiveDateTime)>) {
        let now = to_unix(crate::domain::time::now());
        let mut written = lock(&self.last_used_written);
        for (id, at) in known {
            let at = to_unix(at);
            if now - at < LAST_USED_GRANULARITY_SECONDS {
                written.at.entry(id).or_insert(at);
            }
        }
    }

    /// Notes the keys whose "last used" is due to be written: never written by this instance,
    /// or last written a minute or more before their latest use. Kept apart from folding, which
    /// counts uses exactly and must stay short; a crash loses only these moves.
    pub(super) fn note_last_used(&self, uses: &[KeyUse]) {
        let mut written = lock(&self.last_used_written);
        written.prune_if_grown(to_unix(crate::domain::time::now()));
        let mut due = lock(&self.last_used_due);
        let mut passed_over = 0;
        for (id, (at, ip)) in latest_use_per_key(uses) {
            if due.len() >= MAX_DUE && !due.holds(id) {
                passed_over += 1;
                continue;
            }
            if written.moves(id, to_unix(at)) {
                due.note(id, at, ip);
            }
        }
        if passed_over > 0 {
            lock(&self.last_used_pace).passed_over += passed_over;
        }
    }

    /// The background writer's step: writes marks as `write_last_used_blocking` does, unless
    /// the pause after its last write is still running.
    pub(super) fn write_last_used_paced(&self, db: &Db) -> DbResult<()> {
        if lock(&self.last_used_pace).pace.resting() {
            return Ok(());
        }
        let started = Instant::now();
        let written = self.write_last_used_blocking(db);
        lock(&self.last_used_pace).pace.rest_after(started.elapsed(), MARKS_SHARE_PERCENT);
        written.map(|_| ())
    }

    /// Uses whose mark was passed over because too many were waiting (for the benchmark).
    pub(super) fn marks_passed_over(&self) -> u64 {
        lock(&self.last_used_pace).passed_over
    }

    /// Writes up to `marks_per_write` due "last used" moves in one transaction; returns how
    /// many are still due.
    pub fn write_last_used_blocking(&self, db: &Db) -> DbResult<usize> {
        let marks = lock(&self.last_used_due).take_oldest(marks_per_write(db));
        if marks.is_empty() {
            return Ok(0);
        }
        if let Err(e) = db.write_quietly(|conn| crate::db::usage::mark_last_used(conn, &marks)) {
            let mut due = lock(&self.last_used_due);
            for (id, at, ip) in marks {
                due.note(id, at, ip);
            }
            return Err(e);
        }
        Ok(lock(&self.last_used_due).len())
    }
}

/// Most marks this instance remembers writing: past this even after pruning (more keys in use
/// within a minute than this), it forgets them all, which costs only early writes.
const MAX_WRITTEN: usize = 1_000_000;

/// When this instance last moved each key's "last used" (seconds since the epoch), for the
/// marks younger than the granularity: an older one holds no write back, so those are pruned,
/// and the map holds about the keys used within a minute rather than every key ever used.
#[derive(Default)]
pub(super) struct WrittenMarks {
    at: FastMap<i64, i64>,
    /// Entries after the last pruning: the next waits until the map has doubled.
    kept: usize,
}

impl WrittenMarks {
    /// Whether a use at `at` moves the key's mark; if it does, it is remembered as moved.
    fn moves(&mut self, id: i64, at: i64) -> bool {
        match self.at.entry(id) {
            std::collections::hash_map::Entry::Occupied(mut w) => {
                let due = at - *w.get() >= LAST_USED_GRANULARITY_SECONDS;
                if due {
                    w.insert(at);
                }
                due
            }
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(at);
                true
            }
        }
    }

    /// Drops the marks that can no longer hold a write back, once the map has doubled since
    /// it was last pruned (so pruning costs each entry O(1)); gives back the table's room when
    /// most of it is empty.
    fn prune_if_grown(&mut self, now: i64) {
        if self.at.len() < 2 * self.kept + 4_096 {
            return;
        }
        self.at.retain(|_, w| now - *w < LAST_USED_GRANULARITY_SECONDS);
        if self.at.len() > MAX_WRITTEN {
            self.at.clear();
        }
        if self.at.capacity() > 4 * self.at.len() + 4_096 {
            self.at.shrink_to_fit();
        }
        self.kept = self.at.len();
    }

    pub(super) fn len(&self) -> usize {
        self.at.len()
    }

    pub(super) fn capacity(&self) -> usize {
        self.at.capacity()
    }
}

/// "Last used" moves waiting to be written, first due first written, so that under sustained
/// load no key waits behind others that keep falling due.
#[derive(Default)]
pub(super) struct DueMarks {
    latest: FastMap<i64, (NaiveDateTime, IpAddr)>,
    order: std::collections::VecDeque<i64>,
}

impl DueMarks {
    /// A key's latest use is due; a key already waiting keeps its place and takes the later use.
    fn note(&mut self, id: i64, at: NaiveDateTime, ip: IpAddr) {
        match self.latest.entry(id) {
            std::collections::hash_map::Entry::Occupied(mut waiting) => {
                if at >= waiting.get().0 {
                    waiting.insert((at, ip));
                }
            }
            std::collections::hash_map::Entry::Vacant(new) => {
                new.insert((at, ip));
                self.order.push_back(id);
            }
        }
    }

    /// The `n` longest due, in key order (neighbouring rows share pages).
    fn take_oldest(&mut self, n: usize) -> Vec<(i64, NaiveDateTime, IpAddr)> {
        let mut marks: Vec<(i64, NaiveDateTime, IpAddr)> = Vec::with_capacity(n.min(self.order.len()));
        while marks.len() < n {
            let Some(id) = self.order.pop_front() else { break };
            if let Some((at, ip)) = self.latest.remove(&id) {
                marks.push((id, at, ip));
            }
        }
        marks.sort_unstable_by_key(|(id, _, _)| *id);
        marks
    }

    pub(super) fn len(&self) -> usize {
        self.latest.len()
    }

    fn holds(&self, id: i64) -> bool {
        self.latest.contains_key(&id)
    }
}

fn latest_use_per_key(uses: &[KeyUse]) -> FastMap<i64, (NaiveDateTime, IpAddr)> {
    let mut latest: FastMap<i64, (NaiveDateTime, IpAddr)> = FastMap::default();
    for u in uses {
        let entry = latest.entry(u.key_id).or_insert((u.last_seen, u.ip));
        if u.last_seen > entry.0 {
            *entry = (u.last_seen, u.ip);
        }
    }
    latest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_marks_are_written_first_due_first_with_each_keys_latest_use() {
        let at = |s: i64| chrono::DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap().naive_utc();
        let (home, work): (IpAddr, IpAddr) = ("198.51.100.1".parse().unwrap(), "203.0.113.9".parse().unwrap());
        let mut due = DueMarks::default();
        due.note(30, at(1), home);
        due.note(10, at(2), home);
        due.note(20, at(3), home);
        due.note(30, at(4), work);
        due.note(30, at(0), home);
        assert_eq!(due.take_oldest(2), vec![(10, at(2), home), (30, at(4), work)]);
        due.note(5, at(5), home);
        assert_eq!(due.len(), 2);
        assert_eq!(due.take_oldest(10), vec![(5, at(5), home), (20, at(3), home)]);
        assert!(due.take_oldest(10).is_empty());
    }

    #[test]
    fn with_too_many_marks_waiting_new_keys_are_passed_over_and_waiting_ones_still_move() {
        let at = |s: i64| chrono::DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap().naive_utc();
        let ip: IpAddr = "198.51.100.1".parse().unwrap();
        let used = |key_id, s| KeyUse { key_id, agent_id: 1, ip, first_seen: at(s), last_seen: at(s), hits: 1 };
        let recorder = UsageRecorder::default();
        let uses: Vec<KeyUse> = (0..MAX_DUE as i64).map(|id| used(id, 0)).collect();
        recorder.note_last_used(&uses);
        assert_eq!(recorder.stats().last_used_due, MAX_DUE);
        // A new key is passed over (its next use is noted once there is room); a waiting key's
        // mark moves to its latest use, a minute on.
        recorder.note_last_used(&[used(-1, 60), used(7, 60)]);
        assert_eq!(recorder.stats().last_used_due, MAX_DUE);
        assert_eq!(recorder.marks_passed_over(), 1);
        let taken = lock(&recorder.last_used_due).take_oldest(MAX_DUE);
        assert!(taken.contains(&(7, at(60), ip)) && !taken.iter().any(|(id, _, _)| *id == -1));
        recorder.note_last_used(&[used(-1, 61)]);
        assert_eq!(lock(&recorder.last_used_due).take_oldest(2), vec![(-1, at(61), ip)], "with room, it is noted");
    }

    #[test]
    fn marks_take_a_tenth_of_the_writers_time() {
        use std::time::Duration;
        let pause = |ms| super::super::pause_for_share(Duration::from_millis(ms), MARKS_SHARE_PERCENT);
        assert_eq!(pause(150), Duration::from_millis(1350));
        assert_eq!(pause(0), Duration::ZERO);
    }

    #[test]
    fn a_mark_holds_back_writes_for_a_minute_and_is_forgotten_after() {
        let mut written = WrittenMarks::default();
        assert!(written.moves(1, 1_000));
        assert!(!written.moves(1, 1_059));
        assert!(written.moves(1, 1_060));
        // Thousands of keys used long ago, and one just now: pruning keeps only the fresh one.
        for id in 100..10_000 {
            assert!(written.moves(id, 500));
        }
        assert!(written.moves(2, 1_100));
        written.prune_if_grown(1_110);
        assert_eq!(written.len(), 2, "the marks of keys 1 and 2 are younger than a minute");
        assert!(written.capacity() < 10_000, "the table gave back its room: {}", written.capacity());
        assert!(!written.moves(2, 1_150));
        assert!(written.moves(100, 1_150), "a forgotten mark is written again at the next use");
    }
}

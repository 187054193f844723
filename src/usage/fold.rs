//! The fold: the pending log merged into the usage table, in sorted batches, large merges
//! written back as pieces and folded one transaction each.

use super::{lock, Pending, UsageRecorder};
use crate::db::usage::KeyUse;
use crate::db::{Db, DbResult};
use std::time::{Duration, Instant};

/// A pending log of at most this many uses is folded by the background writer at once, so
/// usage shows on pages straight away when the site is quiet. Folding each flush merges
/// nothing: at this size (a flush every 250 ms) it upserts at most 2,000 rows a second, a few
/// per cent of a core. It was 5,000: at 20,000 calls a second a flush holds about that many,
/// and the folder went on folding flush after flush, unmerged, whenever they came in just
/// under it.
const QUIET_BACKLOG: i64 = 500;

/// A page folds a pending log of at most this many uses itself before it reads usage, so it
/// shows usage straight away on a busier site too; beyond, it shows what is folded.
const PAGE_BACKLOG: i64 = 5_000;

/// Under load the log is folded this often: the longer the wait, the more uses of each key are
/// merged before the random-access upserts, which cost the database most of what usage costs
/// it. Measured on SQLite with 100,000 tokens in constant use: folding every 10 seconds took
/// about a fifth of the server's CPU beside the requests, every 30 about a tenth. A page under
/// such load shows usage up to this old, and `FOLD_SPREAD` more while a fold is spread.
const FOLD_EVERY: Duration = Duration::from_secs(30);

/// Pending batches (one flush each) one fold takes at most.
const BATCHES_PER_FOLD: i64 = 1_000;

/// A fold stops taking batches once it has merged this many (key, agent, address) rows…
///
/// The more rows one fold upserts, the more of them share each page it writes: uses spread
/// over 1,000,000 keys cost SQLite 6.4 µs and 0.68 KB of log a row in folds of 150,000 rows,
/// 4.7–5.4 µs and 0.32 KB in folds of 320,000, 3.8–4.1 µs and 0.17 KB in folds of 600,000
/// (bench/fold_pieces.py), and the checkpoint writes every page of the log again.
const MAX_MERGED: usize = 320_000;

/// …and its merge holds at most this many uses at once (72 bytes each, 29 MB), merged in
/// place by sorting whenever the buffer fills, so its memory is bounded however busy the site
/// and however many keys. (A hash map keyed by row took about 200 bytes a merged row, with the
/// sorted copy a fold writes from beside it.)
const MERGE_ROOM: usize = 400_000;

/// …or once it has read this many uses, which bounds how long it holds SQLite's one writer
/// while merging: about 0.4–1.1 µs a use on two busy cores, reading, sorting and writing the
/// pieces back (at 1,000,000 keys, 160–440 ms for a full merge of 390,000 uses into 325,000
/// rows; 75–250 ms for the 175,000 uses of the 150,000-row merges before).
const MAX_READ_USES: i64 = 2_000_000;

/// How long one transaction of a fold should hold SQLite's one writer (revocations and sign-ins
/// wait behind it). More merged rows than fit are written back to the pending log as pieces,
/// in key order, in place of the batches they merge; each piece is then folded in a
/// transaction of its own, while every piece stays folded exactly once. A piece's size follows
/// from what the last one cost a row. What a row costs hardly depends on it: a piece is a run
/// of consecutive keys, and its rows are as dense on the pages as the fold's (at 1,000,000 keys,
/// folds of 150,000 rows: 6.4 µs a row in pieces of 20,000, 6.3 in pieces of 50,000;
/// bench/fold_pieces.py). What a fold merges in all does: see `MAX_MERGED`.
const PIECE_HOLD: Duration = Duration::from_millis(250);

/// Rows of the first piece, before any has been timed, and the bounds of a piece's size.
const PIECE_ROWS: usize = 10_000;
const PIECE_ROWS_RANGE: std::ops::RangeInclusive<usize> = 2_000..=50_000;

/// Rows a piece should have, if the last took `took` for `rows` rows.
fn piece_rows_after(took: Duration, rows: usize) -> usize {
    let fit = (PIECE_HOLD.as_nanos() * rows as u128).checked_div(took.as_nanos()).unwrap_or(u128::MAX);
    usize::try_from(fit).unwrap_or(usize::MAX).clamp(*PIECE_ROWS_RANGE.start(), *PIECE_ROWS_RANGE.end())
}

/// How long one tick of the folder goes on before leaving the rest to the next tick.
const FOLD_TICK_BUDGET: Duration = Duration::from_millis(100);

/// Under sustained load the folder spends at most this share (in percent) of its time folding:
/// after a tick of background folding, it pauses for 3/2 of the tick's length. Folding
/// everything a busy site at 1,000,000 keys used in 30 s takes seconds of CPU; done in one go,
/// it took a whole core from the requests for those seconds. Spread out, it takes at most
/// this share, and a page's own fold or the shutdown's are not held back.
const FOLD_SHARE_PERCENT: u32 = 40;

/// Up to this many uses waiting, the folder keeps to `FOLD_SHARE_PERCENT`; beyond, its share
/// rises with the backlog, to all of its time at `UNPACED_BACKLOG`. Held to its share, the
/// folder fell behind for good when nearly every use is of a different key: at 1,000,000 keys
/// used uniformly at 24,000 calls a second the log grew by 17,000 uses a second (3.5 million
/// after 200 s, 56 bytes each), so usage went ever staler and the file ever larger. Now the
/// backlog settles where the folder's share keeps up, and the requests pay for it.
const PACED_BACKLOG: i64 = 1_000_000;

/// The backlog at which the folder no longer pauses at all (about 170 MB of log).
const UNPACED_BACKLOG: i64 = 3_000_000;

/// A fold that keeps up spreads its pieces over this long after its merge rather than folding
/// them as fast as its share allows: the same work, as a steady few per cent of a core instead
/// of 40 % for seconds every `FOLD_EVERY`. At 100,000 keys in constant use a fold is about 2 s
/// of work, which took 40 % of a core for 5 s of every 30; any few seconds of requests either
/// met it or not, and their throughput swung by a tenth with it. It ends a little before the
/// next fold is due, which waits for it if it runs late.
const FOLD_SPREAD: Duration = Duration::from_secs(FOLD_EVERY.as_secs() - 5);

/// A spread fold takes at least this share of its time, so that it is never idle for long.
const MIN_SPREAD_SHARE_PERCENT: u32 = 5;

/// The share of its time (percent) that does `work` within `within`.
fn share_to_finish(work: Duration, within: Duration) -> u32 {
    let Some(percent) = (work.as_nanos() * 100).checked_div(within.as_nanos()) else { return 100 };
    u32::try_from(percent + 1).unwrap_or(100).clamp(MIN_SPREAD_SHARE_PERCENT, 100)
}

/// The folder's share of its time (percent) with `backlog` uses waiting.
fn fold_share_percent(backlog: i64) -> u32 {
    if backlog <= PACED_BACKLOG {
        return FOLD_SHARE_PERCENT;
    }
    let over = (backlog - PACED_BACKLOG).min(UNPACED_BACKLOG - PACED_BACKLOG);
    let rise = i64::from(100 - FOLD_SHARE_PERCENT) * over / (UNPACED_BACKLOG - PACED_BACKLOG);
    FOLD_SHARE_PERCENT + rise as u32
}

#[derive(Default)]
pub(super) struct FoldState {
    last_fold: Option<Instant>,
    /// Background folding rests between ticks (`fold_share_percent`).
    pace: super::Pace,
    /// A fold left batches behind: the next tick goes on at once.
    catching_up: bool,
    /// Pieces of a merged fold still to be folded, in key order.
    pieces: std::collections::VecDeque<i64>,
    /// Uses in the pending log when it was last looked at.
    backlog: i64,
    /// Rows a piece is given (`piece_rows_after` the last piece), once one has been timed.
    piece_rows: Option<usize>,
    /// How long the last piece took to fold.
    piece_took: Option<Duration>,
    /// When the pieces of a fold that took every batch should be folded (`FOLD_SPREAD`).
    spread_until: Option<Instant>,
}

impl FoldState {
    /// The folder's share of its time until its next run: as the backlog allows, and no more
    /// than a spread fold needs to fold its pieces in time.
    fn share_percent(&self) -> u32 {
        let allowed = fold_share_percent(self.backlog);
        match self.spread_until {
            Some(until) if !self.catching_up && !self.pieces.is_empty() => {
                let work = self.piece_took.unwrap_or(PIECE_HOLD) * self.pieces.len() as u32;
                allowed.min(share_to_finish(work, until.saturating_duration_since(Instant::now())))
            }
            _ => allowed,
        }
    }
}

/// What one transaction of a fold did.
enum FoldStep {
    /// Upserted these merged uses.
    Folded(Vec<KeyUse>),
    /// Wrote the merged uses back as pieces (their pending ids), to be folded one by one.
    Merged(Vec<i64>),
}

/// When the pending log is folded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fold {
    /// Some batches, if the log is small or the interval has passed (the writer thread's tick).
    WhenDue,
    /// Only if the log is small (before a page reads usage).
    IfSmall,
    /// Everything (shutdown).
    All,
}

impl UsageRecorder {
    /// Folds the pending log into the usage table, as `how` says; returns the uses folded.
    pub fn fold_blocking(&self, db: &Db, how: Fold) -> DbResult<usize> {
        let mut state = match how {
            // A page does not wait behind a long fold; it shows what is folded.
            Fold::IfSmall => match self.folding.try_lock() {
                Ok(state) => state,
                Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => return Ok(0),
            },
            _ => lock(&self.folding),
        };
        if how == Fold::IfSmall && !state.pieces.is_empty() {
            return Ok(0);
        }
        if how == Fold::WhenDue && state.pace.resting() {
            return Ok(0);
        }
        let started = Instant::now();
        let mut folded = 0;
        loop {
            let step = match state.pieces.pop_front() {
                Some(piece) => match timed(|| db.write_quietly(|conn| fold_piece(conn, piece, &self.alerting))) {
                    (Ok(uses), took) => {
                        if !uses.is_empty() {
                            state.piece_rows = Some(piece_rows_after(took, uses.len()));
                            state.piece_took = Some(took);
                        }
                        FoldStep::Folded(uses)
                    }
                    (Err(e), _) => {
                        state.pieces.push_front(piece);
                        return Err(e);
                    }
                },
                None => {
                    let interval_passed = state.last_fold.is_none_or(|t| t.elapsed() >= FOLD_EVERY);
                    let catching_up = state.catching_up;
                    let due = |uses: i64| match how {
                        Fold::All => true,
                        Fold::IfSmall => uses <= PAGE_BACKLOG,
                        Fold::WhenDue => uses <= QUIET_BACKLOG || interval_passed || catching_up,
                    };
                    let piece_rows = state.piece_rows.unwrap_or(PIECE_ROWS);
                    let merged = db.write_quietly(|conn| merge_due_batches(conn, due, piece_rows, &self.alerting))?;
                    state.backlog = merged.backlog;
                    let Some((step, more)) = merged.step else {
                        // Nothing left to take (a page's fold passes over a long log instead).
                        if how != Fold::IfSmall {
                            state.catching_up = false;
                        }
                        break;
                    };
                    state.catching_up = more;
                    if !more {
                        state.last_fold = Some(Instant::now());
                    }
                    state.spread_until = (!more && how == Fold::WhenDue).then(|| Instant::now() + FOLD_SPREAD);
                    step
                }
            };
            match step {
                // Only uses that are folded for good move a key's "last used".
                FoldStep::Folded(uses) => {
                    self.note_last_used(&uses);
                    folded += uses.len();
                }
                FoldStep::Merged(pieces) => state.pieces.extend(pieces),
            }
            let more = state.catching_up || !state.pieces.is_empty();
            if !more || (how != Fold::All && started.elapsed() >= FOLD_TICK_BUDGET) {
                if how == Fold::WhenDue {
                    let share = state.share_percent();
                    state.pace.rest_after(started.elapsed(), share);
                }
                break;
            }
            // Let a waiting append have the writer between two transactions.
            std::thread::yield_now();
        }
        Ok(folded)
    }

    /// When the background folder should go on, if the last fold left work: after its pause.
    pub(super) fn next_fold_in(&self) -> Option<Duration> {
        let state = lock(&self.folding);
        if !state.catching_up && state.pieces.is_empty() {
            return None;
        }
        Some(state.pace.rest_left())
    }
}

/// What `work` returned and how long it took.
fn timed<T>(work: impl FnOnce() -> T) -> (T, Duration) {
    let started = Instant::now();
    let result = work();
    (result, started.elapsed())
}

/// What a look at the pending log did.
struct MergeDue {
    /// Uses in the log before it.
    backlog: i64,
    /// What was done and whether batches were left behind, if anything was due.
    step: Option<(FoldStep, bool)>,
}

/// Takes the oldest pending batches if the log's length (in uses) is `due`, and merges them:
/// folded at once if they fit in one transaction, otherwise written back as pieces.
fn merge_due_batches(
    conn: &mut crate::db::DbConn,
    due: impl Fn(i64) -> bool,
    piece_rows: usize,
    alerting: &[String],
) -> DbResult<MergeDue> {
    let (batches, backlog) = crate::db::usage::backlog(conn)?;
    let nothing = MergeDue { backlog, step: None };
    if batches == 0 || !due(backlog) {
        return Ok(nothing);
    }
    let taken = crate::db::usage::take_pending(conn, BATCHES_PER_FOLD)?;
    if taken.is_empty() {
        return Ok(nothing); // another instance is folding them
    }
    let started = Instant::now();
    // The log's length bounds what the merge can take: a quiet site's fold reserves little.
    let mut merged = Merged::with_room(usize::try_from(backlog).unwrap_or(0).clamp(1, MERGE_ROOM));
    let mut ids = Vec::with_capacity(taken.len());
    let mut read = 0;
    for id in taken {
        let batch = crate::db::usage::pending_batch(conn, id)?;
        read += (batch.len() / crate::db::usage::RECORD) as i64;
        merged.add(crate::db::usage::unpack(&batch));
        ids.push(id);
        if read >= MAX_READ_USES || merged.reaches(MAX_MERGED) {
            break;
        }
    }
    let merged = merged.into_sorted();
    tracing::debug!(uses = read, rows = merged.len(), ms = started.elapsed().as_millis() as u64, "pending uses merged");
    let step = if merged.len() <= piece_rows {
        let created = crate::db::usage::add_uses(conn, &merged)?;
        super::alerts::note_new_clients(conn, &created, alerting)?;
        FoldStep::Folded(merged)
    } else {
        let pieces =
            merged.chunks(piece_rows).map(|piece| crate::db::usage::append(conn, piece)).collect::<DbResult<_>>()?;
        FoldStep::Merged(pieces)
    };
    crate::db::usage::remove_pending(conn, &ids)?;
    Ok(MergeDue { backlog, step: Some((step, batches > ids.len())) })
}

/// Folds one piece of a merged fold, unless another instance has folded it meanwhile.
fn fold_piece(conn: &mut crate::db::DbConn, piece: i64, alerting: &[String]) -> DbResult<Vec<KeyUse>> {
    if !crate::db::usage::claim_pending(conn, piece)? {
        return Ok(Vec::new());
    }
    let uses: Vec<KeyUse> = crate::db::usage::unpack(&crate::db::usage::pending_batch(conn, piece)?).collect();
    let created = crate::db::usage::add_uses(conn, &uses)?;
    super::alerts::note_new_clients(conn, &created, alerting)?;
    crate::db::usage::remove_pending(conn, &[piece])?;
    Ok(uses)
}

/// Uses merged to one row per (key, agent, address), in key order: appended as they come, and
/// sorted and merged in place whenever the appended uses reach as many again as the rows
/// merged so far (at least `FIRST_MERGE_AT`), and never past the room. The buffer is reserved
/// whole at the start but only the part in use is touched, so a fold whose uses make few rows
/// (a small site, however busy) holds little memory.
struct Merged {
    uses: Vec<KeyUse>,
    /// How many of `uses`, from the front, are sorted and merged.
    merged: usize,
    room: usize,
}

/// Uses appended before the first merge of a fold.
const FIRST_MERGE_AT: usize = 50_000;

impl Merged {
    fn with_room(room: usize) -> Self {
        Merged { uses: Vec::with_capacity(room), merged: 0, room }
    }

    fn add(&mut self, uses: impl ExactSizeIterator<Item = KeyUse>) {
        let merge_at = (2 * self.merged).clamp(FIRST_MERGE_AT.min(self.room), self.room);
        if self.uses.len() + uses.len() > merge_at {
            self.merge();
        }
        // A batch that does not fit beside the rows merged so far still comes in whole.
        self.uses.reserve_exact(uses.len());
        self.uses.extend(uses);
    }

    /// Whether the uses make at least `rows` rows: merged first if the count could be that high.
    fn reaches(&mut self, rows: usize) -> bool {
        if self.uses.len() >= rows {
            self.merge();
        }
        self.uses.len() >= rows
    }

    fn merge(&mut self) {
        if self.merged == self.uses.len() {
            return;
        }
        self.uses.sort_unstable_by_key(KeyUse::row);
        // `dedup_by` hands each use with the one before it that is kept: same row, add it there,
        // as the recorder adds uses up.
        self.uses.dedup_by(|later, kept| {
            let same = later.row() == kept.row();
            if same {
                let mut sum = Pending::from(&*kept);
                sum.merge(Pending::from(&*later));
                (kept.first_seen, kept.last_seen, kept.hits) = (sum.first_seen, sum.last_seen, sum.hits);
            }
            same
        });
        self.merged = self.uses.len();
    }

    /// In key order, so that neighbouring upserts share pages.
    fn into_sorted(mut self) -> Vec<KeyUse> {
        self.merge();
        self.uses
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    #[test]
    fn the_folder_takes_more_of_its_time_the_further_behind_it_is() {
        assert_eq!(fold_share_percent(0), FOLD_SHARE_PERCENT);
        assert_eq!(fold_share_percent(PACED_BACKLOG), FOLD_SHARE_PERCENT);
        let halfway = fold_share_percent((PACED_BACKLOG + UNPACED_BACKLOG) / 2);
        assert!(FOLD_SHARE_PERCENT < halfway && halfway < 100, "{halfway}");
        assert_eq!(fold_share_percent(UNPACED_BACKLOG), 100);
        assert_eq!(fold_share_percent(50 * UNPACED_BACKLOG), 100);
        assert!(super::super::pause_for_share(Duration::from_millis(100), 100).is_zero());
    }

    #[test]
    fn a_fold_that_keeps_up_spreads_its_pieces_over_the_time_it_has() {
        // 1.5 s of pieces within 15 s: a tenth of the time, rounded up.
        assert_eq!(share_to_finish(Duration::from_millis(1_500), Duration::from_secs(15)), 11);
        // Little work: never idle for long.
        assert_eq!(share_to_finish(Duration::from_millis(10), Duration::from_secs(15)), MIN_SPREAD_SHARE_PERCENT);
        // Late, or more work than time: all of it.
        assert_eq!(share_to_finish(Duration::from_secs(1), Duration::ZERO), 100);
        assert_eq!(share_to_finish(Duration::from_secs(30), Duration::from_secs(15)), 100);

        let spread = |pieces: i64, catching_up| FoldState {
            pieces: (0..pieces).collect(),
            piece_took: Some(Duration::from_millis(250)),
            spread_until: Some(Instant::now() + Duration::from_secs(10)),
            catching_up,
            ..Default::default()
        };
        // Four pieces of 250 ms within 10 s: about a tenth, well under the folder's 40 %.
        assert!((10..=11).contains(&spread(4, false).share_percent()), "{}", spread(4, false).share_percent());
        // More than the share allows in time: the share; a fold that left batches: not spread.
        assert_eq!(spread(40, false).share_percent(), FOLD_SHARE_PERCENT);
        assert_eq!(spread(4, true).share_percent(), FOLD_SHARE_PERCENT);
        let backlogged = FoldState { backlog: UNPACED_BACKLOG, ..spread(4, true) };
        assert_eq!(backlogged.share_percent(), 100);
    }

    #[test]
    fn pieces_are_as_large_as_a_short_hold_of_the_writer_allows() {
        // 10,000 rows in 100 ms: 10 µs a row, so 25,000 fit in the hold.
        assert_eq!(piece_rows_after(Duration::from_millis(100), 10_000), 25_000);
        // Dear rows: no fewer than the smallest piece.
        assert_eq!(piece_rows_after(Duration::from_secs(5), 1_000), *PIECE_ROWS_RANGE.start());
        // Cheap rows, or a piece that took no measurable time: no more than the largest.
        assert_eq!(piece_rows_after(Duration::from_millis(1), 10_000), *PIECE_ROWS_RANGE.end());
        assert_eq!(piece_rows_after(Duration::ZERO, 10_000), *PIECE_ROWS_RANGE.end());
    }

    /// However many uses pass through a merge, it holds no more than its room.
    #[test]
    fn a_merge_holds_no_more_than_its_room() {
        let at = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap().naive_utc();
        let ip: IpAddr = "198.51.100.1".parse().unwrap();
        let mut merged = Merged::with_room(1_000);
        for batch in 0..200i64 {
            let uses = (0..100u32).map(|i| KeyUse {
                key_id: (batch * 7 + i64::from(i)) % 500,
                agent_id: 1,
                ip,
                first_seen: at,
                last_seen: at,
                hits: 1,
            });
            merged.add(uses);
            assert_eq!(merged.uses.capacity(), 1_000, "reserved once");
            assert!(merged.uses.len() <= 1_000);
        }
        let rows = merged.into_sorted();
        assert_eq!(rows.len(), 500);
        assert_eq!(rows.iter().map(|u| u.hits).sum::<i64>(), 20_000, "every use is counted once");
        assert!(rows.windows(2).all(|w| w[0].key_id < w[1].key_id));
    }

    #[test]
    fn merged_uses_add_up_per_key_agent_and_address_in_key_order() {
        let at = |s: i64| chrono::DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap().naive_utc();
        let (home, work): (IpAddr, IpAddr) = ("198.51.100.1".parse().unwrap(), "203.0.113.9".parse().unwrap());
        let used = |key_id, agent_id, ip, first, last, hits| KeyUse {
            key_id,
            agent_id,
            ip,
            first_seen: at(first),
            last_seen: at(last),
            hits,
        };
        // Room for three: the second batch is merged with the first in place as it comes.
        let mut merged = Merged::with_room(3);
        merged.add([used(9, 1, home, 5, 6, 2), used(3, 1, home, 1, 1, 1)].into_iter());
        merged.add([used(9, 1, home, 2, 3, 4), used(9, 1, work, 7, 7, 1), used(9, 2, home, 8, 8, 1)].into_iter());
        assert!(merged.reaches(4));
        assert!(!merged.reaches(5), "five uses, four rows");
        assert_eq!(
            merged.into_sorted(),
            vec![
                used(3, 1, home, 1, 1, 1),
                used(9, 1, home, 2, 6, 6),
                used(9, 1, work, 7, 7, 1),
                used(9, 2, home, 8, 8, 1)
            ]
        );
    }
}

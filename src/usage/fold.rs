//! The fold: the pending log merged into the usage table. A small log is merged and upserted
//! at once. A larger one is merged in memory (as much as fits) and stored back sorted, as
//! pieces; a few such merges later, a sweep goes through the key space across all their pieces
//! at once, a short transaction per step, so that a key used in every merge is upserted once
//! per sweep.

use super::{lock, UsageRecorder};
use crate::db::usage::{KeyUse, UseRecord};
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

/// Pending batches (one flush each) one merge takes at most.
const BATCHES_PER_FOLD: i64 = 1_000;

/// A merge stops taking batches once it has merged this many (key, agent, address) rows…
///
/// The more rows one sweep upserts, the more of them share each page it writes: uses spread
/// over 1,000,000 keys cost SQLite 6.4 µs and 0.68 KB of log a row in folds of 150,000 rows,
/// 4.7–5.4 µs and 0.32 KB in folds of 320,000, 3.8–4.1 µs and 0.17 KB in folds of 600,000
/// (bench/fold_pieces.py), and the checkpoint writes every page of the log again.
const MAX_MERGED: usize = 320_000;

/// …and its merge holds at most this many uses at once (`UseRecord`, 56 bytes each, 22 MB), merged in
/// place by sorting whenever the buffer fills, so its memory is bounded however busy the site
/// and however many keys (a merge borrows a copy of at most `MAX_TAIL` uses while it runs). (A hash
/// map keyed by row took about 200 bytes a merged row, with the sorted copy a fold writes from
/// beside it.)
const MERGE_ROOM: usize = 400_000;

/// …or once it has read this many uses, which bounds how long it holds SQLite's one writer
/// while merging: about 0.4–1.1 µs a use on two busy cores, reading, sorting and storing the
/// merged pieces (at 1,000,000 keys, 160–440 ms for a full merge of 390,000 uses into 325,000
/// rows; 75–250 ms for the 175,000 uses of the 150,000-row merges before).
const MAX_READ_USES: i64 = 2_000_000;

/// How long one step of a sweep should hold SQLite's one writer (revocations and sign-ins wait
/// behind it): a step folds the keys up to a bound chosen so that about as many rows as fit are
/// upserted, the bound following from what the last step cost a row. What a row costs hardly
/// depends on the step's size: its rows are a run of consecutive keys, as dense on the pages
/// as the sweep's (at 1,000,000 keys, folds of 150,000 rows: 6.4 µs a row in steps of 20,000,
/// 6.3 in steps of 50,000; bench/fold_pieces.py). How many rows a sweep upserts in all does:
/// see `MAX_MERGED`.
const PIECE_HOLD: Duration = Duration::from_millis(250);

/// A merge is stored back as pieces of this many rows (720 KB): a sweep step reads whole
/// pieces, one of each merge beside the others, so they are small enough to hold a few at once.
const MERGED_PIECE_ROWS: usize = 10_000;

/// Merges stored before a sweep through them starts (unless the log is taken whole sooner).
/// The more merges a sweep covers, the more uses of each key it upserts as one; each adds one
/// piece to what a sweep step holds.
const MAX_RUNS: usize = 8;

/// Rows of the first sweep step, before any has been timed, and the bounds of a step's size.
const PIECE_ROWS: usize = 10_000;
const PIECE_ROWS_RANGE: std::ops::RangeInclusive<usize> = 2_000..=50_000;

/// Rows a sweep step should fold, if the last took `took` for `rows` rows.
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

/// A fold that keeps up spreads its sweep over this long after its merges rather than sweeping
/// as fast as its share allows: the same work, as a steady few per cent of a core instead
/// of 40 % for seconds every `FOLD_EVERY`. At 100,000 keys in constant use a fold is about 2 s
/// of work, which took 40 % of a core for 5 s of every 30; any few seconds of requests either
/// met it or not, and their throughput swung by a tenth with it. It ends a little before the
/// next fold is due, which waits for it if it runs late.
const FOLD_SPREAD: Duration = Duration::from_secs(FOLD_EVERY.as_secs() - 5);

/// A spread sweep takes at least this share of its time, so that it is never idle for long.
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
    /// A merge left batches behind: the next tick goes on at once.
    catching_up: bool,
    /// Merges stored since the last sweep began.
    runs: usize,
    /// Where the sweep through the merged pieces goes on, while one is under way.
    sweep_from: Option<i64>,
    /// The uses of the pieces the sweep has read and not folded whole.
    held: HeldPieces,
    /// Uses the merged pieces held beyond the last sweep step: what the sweep has left.
    sweep_left: i64,
    /// Uses waiting (in the log and in merged pieces) when last looked at.
    backlog: i64,
    /// Rows a sweep step is given (`piece_rows_after` the last one), once one has been timed.
    piece_rows: Option<usize>,
    /// How long the last sweep step took.
    piece_took: Option<Duration>,
    /// When a sweep that began with the log taken whole should be done (`FOLD_SPREAD`).
    spread_until: Option<Instant>,
}

impl FoldState {
    /// The folder's share of its time until its next run: as the backlog allows, and no more
    /// than a spread sweep needs to finish in time.
    fn share_percent(&self) -> u32 {
        let allowed = fold_share_percent(self.backlog);
        match self.spread_until {
            Some(until) if !self.catching_up && self.sweep_from.is_some() => {
                let rows = self.piece_rows.unwrap_or(PIECE_ROWS);
                let steps = usize::try_from(self.sweep_left).unwrap_or(0).div_ceil(rows).max(1);
                let work = self.piece_took.unwrap_or(PIECE_HOLD) * u32::try_from(steps).unwrap_or(u32::MAX);
                allowed.min(share_to_finish(work, until.saturating_duration_since(Instant::now())))
            }
            _ => allowed,
        }
    }

    /// A sweep from the first key on, through every merged piece there is.
    fn start_sweep(&mut self, how: Fold, left: i64) {
        tracing::debug!(merges = self.runs, uses = left, "sweep begins");
        self.sweep_from = Some(i64::MIN);
        self.sweep_left = left;
        self.runs = 0;
        self.spread_until = (!self.catching_up && how == Fold::WhenDue).then(|| Instant::now() + FOLD_SPREAD);
    }
}

/// What one transaction of a fold did.
enum FoldStep {
    /// Upserted these merged uses.
    Folded(Vec<KeyUse>),
    /// Stored the merged uses as pieces, to be swept.
    Merged,
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
        if how == Fold::IfSmall && state.sweep_from.is_some() {
            return Ok(0);
        }
        if how == Fold::WhenDue && state.pace.resting() {
            return Ok(0);
        }
        let started = Instant::now();
        let mut folded = 0;
        // Pieces no sweep of this instance has taken (left by a crash, or stored by another
        // instance) are swept when there is nothing to merge, once per call.
        let mut swept_leftovers = false;
        loop {
            let step = match state.sweep_from {
                // A page does not wait for a sweep: it shows what is folded.
                Some(_) if how == Fold::IfSmall => break,
                Some(from) => {
                    let rows = state.piece_rows.unwrap_or(PIECE_ROWS);
                    let held = &mut state.held;
                    let (swept, took) =
                        timed(|| db.write_quietly(|conn| sweep_step(conn, from, rows, held, &self.alerting)));
                    let swept = swept?;
                    if !swept.uses.is_empty() {
                        state.piece_rows = Some(piece_rows_after(took, swept.uses.len()));
                        state.piece_took = Some(took);
                    }
                    state.sweep_from = swept.next;
                    state.sweep_left = swept.left;
                    if swept.next.is_none() {
                        state.held.clear();
                        tracing::debug!("sweep done");
                    }
                    FoldStep::Folded(swept.uses)
                }
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
                    state.backlog = merged.backlog.total_uses();
                    match merged.step {
                        Some((step, more)) => {
                            state.catching_up = more;
                            if !more {
                                state.last_fold = Some(Instant::now());
                            }
                            if matches!(step, FoldStep::Merged) {
                                state.runs += 1;
                            }
                            if state.runs > 0 && (!more || state.runs >= MAX_RUNS) {
                                state.start_sweep(how, merged.backlog.total_uses());
                            }
                            step
                        }
                        // Nothing left to take (a page's fold passes over a long log instead).
                        None => {
                            if how != Fold::IfSmall {
                                state.catching_up = false;
                            }
                            let leftovers = merged.backlog.pieces > 0
                                && !swept_leftovers
                                && (how == Fold::All || (how == Fold::WhenDue && interval_passed));
                            if state.runs == 0 && !leftovers {
                                break;
                            }
                            swept_leftovers = true;
                            if state.runs == 0 {
                                // Not again before the interval: another instance may be sweeping them.
                                state.last_fold = Some(Instant::now());
                            }
                            state.start_sweep(how, merged.backlog.merged_uses);
                            FoldStep::Merged
                        }
                    }
                }
            };
            // Only uses that are folded for good move a key's "last used".
            if let FoldStep::Folded(uses) = step {
                self.note_last_used(&uses);
                folded += uses.len();
            }
            let more = state.catching_up || state.sweep_from.is_some();
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
        if !state.catching_up && state.sweep_from.is_none() {
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
    /// What waited before it.
    backlog: crate::db::usage::Backlog,
    /// What was done and whether batches were left behind, if anything was due.
    step: Option<(FoldStep, bool)>,
}

/// Takes the oldest pending batches if the log's length (in uses) is `due`, and merges them:
/// folded at once if they fit in one transaction, otherwise stored as merged pieces.
fn merge_due_batches(
    conn: &mut crate::db::DbConn,
    due: impl Fn(i64) -> bool,
    piece_rows: usize,
    alerting: &[String],
) -> DbResult<MergeDue> {
    let backlog = crate::db::usage::backlog(conn)?;
    let nothing = MergeDue { backlog, step: None };
    if backlog.batches == 0 || !due(backlog.uses) {
        return Ok(nothing);
    }
    let taken = crate::db::usage::take_pending(conn, BATCHES_PER_FOLD)?;
    if taken.is_empty() {
        return Ok(nothing); // another instance is folding them
    }
    let started = Instant::now();
    // The log's length bounds what the merge can take: a quiet site's fold reserves little.
    let mut merged = Merged::with_room(usize::try_from(backlog.uses).unwrap_or(0).clamp(1, MERGE_ROOM));
    let mut ids = Vec::with_capacity(taken.len());
    let mut read = 0;
    for id in taken {
        let batch = crate::db::usage::pending_batch(conn, id)?;
        read += (batch.len() / crate::db::usage::RECORD) as i64;
        merged.add(crate::db::usage::unpack_records(&batch));
        ids.push(id);
        if read >= MAX_READ_USES || merged.reaches(MAX_MERGED) {
            break;
        }
    }
    let merged = merged.into_sorted();
    tracing::debug!(uses = read, rows = merged.len(), ms = started.elapsed().as_millis() as u64, "pending uses merged");
    let step = if merged.len() <= piece_rows {
        let uses = key_uses(&merged);
        drop(merged);
        upsert_uses(conn, &uses, alerting)?;
        FoldStep::Folded(uses)
    } else {
        for piece in merged.chunks(MERGED_PIECE_ROWS) {
            crate::db::usage::append_merged(conn, piece)?;
        }
        FoldStep::Merged
    };
    crate::db::usage::remove_pending(conn, &ids)?;
    Ok(MergeDue { backlog, step: Some((step, backlog.batches > ids.len())) })
}

/// Merged uses folded for good: added to the usage table, and their new clients noted.
fn upsert_uses(conn: &mut crate::db::DbConn, uses: &[KeyUse], alerting: &[String]) -> DbResult<()> {
    let created = crate::db::usage::add_uses(conn, uses)?;
    super::alerts::note_new_clients(conn, &created, alerting)?;
    Ok(())
}

/// What one step of a sweep did.
struct SweepStep {
    /// The uses it upserted, one per key, agent and address.
    uses: Vec<KeyUse>,
    /// The key the sweep goes on from, unless it is through.
    next: Option<i64>,
    /// Uses the pieces hold beyond the step.
    left: i64,
}

/// The highest key a sweep step from `from` takes: about `rows` uses across the pieces, and at
/// least the whole of the piece that ends first, so that every step ends a piece. None if no
/// piece holds keys from `from` on.
fn sweep_bound(pieces: &[crate::db::usage::MergedPiece], from: i64, rows: usize) -> Option<i64> {
    // Uses of a piece up to key `end`, taking its keys as spread evenly. A piece is folded from
    // its first key, even one below `from` (stored by another instance after the sweep passed).
    let through = |p: &crate::db::usage::MergedPiece, end: i64| -> i128 {
        if end < p.first_key {
            return 0;
        }
        let (first, last) = (i128::from(p.first_key), i128::from(p.last_key));
        (i128::from(end).min(last) - first + 1) * i128::from(p.use_count) / (last - first + 1)
    };
    let mut ends: Vec<i64> = pieces.iter().map(|p| p.last_key).filter(|&end| end >= from).collect();
    ends.sort_unstable();
    let mut bound = None;
    for end in ends {
        let uses: i128 = pieces.iter().map(|p| through(p, end)).sum();
        if bound.is_some() && uses > rows as i128 {
            break;
        }
        bound = Some(end);
    }
    bound
}

/// One step of a sweep through the merged pieces: their uses of keys from `from` up to a bound
/// (`sweep_bound`), merged across pieces and upserted in one transaction. A piece folded whole
/// is removed; one folded in part keeps its uses beyond the bound, and stays in `held`, so that
/// the next step does not read it again.
fn sweep_step(
    conn: &mut crate::db::DbConn,
    from: i64,
    rows: usize,
    held: &mut HeldPieces,
    alerting: &[String],
) -> DbResult<SweepStep> {
    use crate::db::usage::{claim_merged, keep_merged_from, records_of_keys, remove_merged, unpack_records, RECORD};
    let pieces = crate::db::usage::merged_pieces_from(conn, from)?;
    let Some(bound) = sweep_bound(&pieces, from, rows) else {
        return Ok(SweepStep { uses: Vec::new(), next: None, left: 0 });
    };
    let claimed = claim_merged(conn, from..=bound)?;
    held.read_missing(conn, &claimed)?;
    let taking: Vec<std::ops::Range<usize>> =
        claimed.iter().map(|piece| records_of_keys(&held.0[&piece.id], piece.first_key..=bound)).collect();
    let mut merged = Merged::with_room(taking.iter().map(|r| r.len()).sum::<usize>().max(1));
    // What the pieces hold beyond the step: those it leaves alone whole, the rest in part.
    let mut left: i64 = pieces.iter().filter(|p| !claimed.iter().any(|c| c.id == p.id)).map(|p| p.use_count).sum();
    let mut done = Vec::new();
    for (piece, take) in claimed.iter().zip(taking) {
        let packed = &held.0[&piece.id];
        merged.add(unpack_records(&packed[take.start * RECORD..take.end * RECORD]));
        let beyond = (packed.len() / RECORD - take.end) as i64;
        if beyond == 0 {
            done.push(piece.id);
        } else {
            keep_merged_from(conn, piece.id, bound + 1, beyond)?;
            left += beyond;
        }
    }
    let uses = key_uses(&merged.into_sorted());
    upsert_uses(conn, &uses, alerting)?;
    remove_merged(conn, &done)?;
    for id in done {
        held.0.remove(&id);
    }
    Ok(SweepStep { uses, next: bound.checked_add(1), left })
}

/// The packed uses of the merged pieces a sweep has read, by piece. What a piece holds never
/// changes, only the key it starts from: a piece a step folds in part is read once, not again
/// by each step that folds more of it. About one piece per merge the sweep covers.
#[derive(Default)]
pub(super) struct HeldPieces(std::collections::HashMap<i64, Vec<u8>>);

impl HeldPieces {
    /// Reads the uses of the `claimed` pieces not held, or held but not as the piece now stands
    /// (a piece of the same number stored since, where numbers can come again).
    fn read_missing(
        &mut self,
        conn: &mut crate::db::DbConn,
        claimed: &[crate::db::usage::MergedPiece],
    ) -> DbResult<()> {
        use crate::db::usage::{last_key, records_of_keys};
        let holds = |packed: &[u8], piece: &crate::db::usage::MergedPiece| {
            last_key(packed) == Some(piece.last_key)
                && records_of_keys(packed, piece.first_key..=i64::MAX).len() as i64 == piece.use_count
        };
        let missing: Vec<i64> = claimed
            .iter()
            .filter(|piece| !self.0.get(&piece.id).is_some_and(|packed| holds(packed, piece)))
            .map(|piece| piece.id)
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        for id in &missing {
            self.0.remove(id);
        }
        self.0.extend(crate::db::usage::merged_uses(conn, &missing)?);
        // Both rows of a piece are written and removed together; should its uses be gone all
        // the same, it holds nothing to fold, and is removed rather than stop every sweep.
        for id in missing {
            self.0.entry(id).or_insert_with(|| {
                tracing::warn!(piece = id, "a merged piece without its uses is dropped");
                Vec::new()
            });
        }
        Ok(())
    }

    fn clear(&mut self) {
        self.0 = Default::default();
    }
}

/// Merged uses as the database takes them.
fn key_uses(merged: &[UseRecord]) -> Vec<KeyUse> {
    merged.iter().map(KeyUse::from).collect()
}

/// Uses merged to one row per (key, agent, address), in key order: appended as they come, and
/// sorted and merged in place whenever the appended uses reach as many again as the rows
/// merged so far (at least `FIRST_MERGE_AT`, at most `MAX_TAIL`), and never past the room. The
/// buffer is reserved whole at the start but only the part in use is touched, so a fold whose
/// uses make few rows (a small site, however busy) holds little memory.
struct Merged {
    /// As records (56 bytes) rather than `KeyUse`s (72): a full room takes 22 MB rather than
    /// 29, and at 10,000,000 tokens it fills at every fold, on top of all the process holds.
    uses: Vec<UseRecord>,
    /// How many of `uses`, from the front, are sorted and merged.
    merged: usize,
    room: usize,
}

/// Uses appended before the first merge of a fold.
const FIRST_MERGE_AT: usize = 50_000;

/// Most uses appended between two merges: a merge borrows a copy of them (5.6 MB).
const MAX_TAIL: usize = 100_000;

impl Merged {
    fn with_room(room: usize) -> Self {
        Merged { uses: Vec::with_capacity(room), merged: 0, room }
    }

    /// Takes records as the pending log and merged pieces hold them (or `KeyUse`s).
    fn add<U: Into<UseRecord>>(&mut self, uses: impl ExactSizeIterator<Item = U>) {
        let merge_at = (2 * self.merged).min(self.merged + MAX_TAIL).clamp(FIRST_MERGE_AT.min(self.room), self.room);
        if self.uses.len() + uses.len() > merge_at {
            self.merge();
        }
        // A batch that does not fit beside the rows merged so far still comes in whole.
        self.uses.reserve_exact(uses.len());
        self.uses.extend(uses.map(Into::into));
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
        // The rows merged so far are in order already: only the uses appended since are sorted,
        // and the two runs are then merged in one pass. A third less than sorting all again
        // (with the standard library merging the runs: 100,000 new uses into 100,000 rows 11.6 ms
        // against 18.8, 200,000 into 200,000 20.8 against 31.7; the merge below costs the same,
        // `merge_cost`: 46 ms against 48 for a fold's 400,000 uses, and 37 since it merges
        // `UseRecord`s rather than `KeyUse`s).
        let head = self.merged;
        self.uses[head..].sort_unstable_by_key(UseRecord::row);
        if head > 0 {
            // From the back, through a copy of the new uses only. The standard library's stable
            // sort finds the two runs too, but borrows half the whole buffer while it runs (14 MB
            // of a full room), and at 10,000,000 keys that came on top of the process's peak.
            let tail = self.uses[head..].to_vec();
            let (mut from_head, mut from_tail) = (head, tail.len());
            for to in (0..self.uses.len()).rev() {
                if from_tail == 0 {
                    break; // the rest of the head is where it was
                }
                if from_head > 0 && self.uses[from_head - 1].row() > tail[from_tail - 1].row() {
                    from_head -= 1;
                    self.uses[to] = self.uses[from_head];
                } else {
                    from_tail -= 1;
                    self.uses[to] = tail[from_tail];
                }
            }
        }
        // `dedup_by` hands each use with the one before it that is kept: same row, add it there,
        // as the recorder adds uses up.
        self.uses.dedup_by(|later, kept| {
            let same = later.row() == kept.row();
            if same {
                kept.hits += later.hits;
                kept.first_us = kept.first_us.min(later.first_us);
                kept.last_us = kept.last_us.max(later.last_us);
            }
            same
        });
        self.merged = self.uses.len();
    }

    /// In key order, so that neighbouring upserts share pages.
    fn into_sorted(mut self) -> Vec<UseRecord> {
        self.merge();
        self.uses
    }
}

#[cfg(test)]
mod tests {
    use super::super::Pending;
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

        // A sweep with `steps` steps of 10,000 rows left.
        let spread = |steps: i64, catching_up| FoldState {
            sweep_from: Some(0),
            sweep_left: steps * 10_000,
            piece_rows: Some(10_000),
            piece_took: Some(Duration::from_millis(250)),
            spread_until: Some(Instant::now() + Duration::from_secs(10)),
            catching_up,
            ..Default::default()
        };
        // Four steps of 250 ms within 10 s: about a tenth, well under the folder's 40 %.
        assert!((10..=11).contains(&spread(4, false).share_percent()), "{}", spread(4, false).share_percent());
        // More than the share allows in time: the share; a merge that left batches: not spread.
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

    #[test]
    fn a_sweep_step_takes_about_its_rows_and_always_ends_a_piece() {
        let piece =
            |id, first_key, last_key, use_count| crate::db::usage::MergedPiece { id, first_key, last_key, use_count };
        // Two merges over keys 0–999, in pieces of 250 keys holding 100 uses each.
        let pieces: Vec<_> = (0..8).map(|i| piece(i, (i % 4) * 250, (i % 4) * 250 + 249, 100)).collect();
        // 100 uses a step: the pieces that end first, though they hold 200.
        assert_eq!(sweep_bound(&pieces, 0, 100), Some(249));
        // 450 uses: two pieces of each merge (400); a third would make 600.
        assert_eq!(sweep_bound(&pieces, 0, 450), Some(499));
        // Pieces that begin before the sweep's key (stored by another instance after it passed)
        // are folded from their first key: all of 250..499 counts.
        assert_eq!(sweep_bound(&pieces, 375, 300), Some(499));
        // Pieces a sweep has folded in part count only the uses they still hold.
        let parts = [piece(1, 600, 749, 60), piece(2, 600, 749, 60), piece(3, 750, 999, 100)];
        assert_eq!(sweep_bound(&parts, 600, 150), Some(749));
        assert_eq!(sweep_bound(&parts, 600, 320), Some(999));
        // Past the last key: the sweep is through.
        assert_eq!(sweep_bound(&pieces, 1_000, 100), None);
        assert_eq!(sweep_bound(&[], 0, 100), None);
        // The first step of a sweep starts below every key.
        assert_eq!(sweep_bound(&pieces, i64::MIN, 100), Some(249));
    }

    #[test]
    fn the_records_of_a_range_of_keys_are_found_in_sorted_packed_uses() {
        let at = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap().naive_utc();
        let ip: IpAddr = "198.51.100.1".parse().unwrap();
        let keys = [3, 5, 5, 5, 8, 13];
        let uses: Vec<KeyUse> = keys
            .iter()
            .enumerate()
            .map(|(agent, &key_id)| KeyUse {
                key_id,
                agent_id: agent as i64,
                ip,
                first_seen: at,
                last_seen: at,
                hits: 1,
            })
            .collect();
        let packed = crate::db::usage::pack(&uses);
        let records = |from, to| crate::db::usage::records_of_keys(&packed, from..=to);
        assert_eq!(records(5, 5), 1..4);
        assert_eq!(records(4, 8), 1..5);
        assert_eq!(records(i64::MIN, 3), 0..1);
        assert_eq!(records(9, 12), 5..5, "no key in range: an empty range where they would be");
        assert_eq!(records(14, i64::MAX), 6..6);
    }

    /// What a full room takes at 10,000,000 tokens (`MERGE_ROOM`) follows from this size.
    #[test]
    fn a_merged_use_takes_56_bytes() {
        assert_eq!(std::mem::size_of::<UseRecord>(), 56);
        assert_eq!(std::mem::size_of::<UseRecord>(), crate::db::usage::RECORD, "as packed");
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
        let rows = key_uses(&merged.into_sorted());
        assert_eq!(rows.len(), 500);
        assert_eq!(rows.iter().map(|u| u.hits).sum::<i64>(), 20_000, "every use is counted once");
        assert!(rows.windows(2).all(|w| w[0].key_id < w[1].key_id));
    }

    proptest::proptest! {
        /// Whatever batches come, in whatever room: each row once, in key order, with every
        /// use of it added up, as a map of rows would have it.
        #[test]
        fn merging_in_runs_counts_every_use_once(
            batches in proptest::collection::vec(
                proptest::collection::vec((0i64..60, 0i64..3, 0u8..3, 0i64..1_000, 1i64..5), 0..40),
                0..30,
            ),
            room in 1usize..200,
        ) {
            let at = |s: i64| chrono::DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap().naive_utc();
            let mut expected = std::collections::BTreeMap::<(i64, i64, IpAddr), Pending>::new();
            let mut merged = Merged::with_room(room);
            for batch in &batches {
                let uses: Vec<KeyUse> = batch
                    .iter()
                    .map(|&(key_id, agent_id, host, second, hits)| KeyUse {
                        key_id,
                        agent_id,
                        // Hosts 0 and 1 over IPv4, 2 over IPv6.
                        ip: if host < 2 {
                            IpAddr::from([198, 51, 100, host])
                        } else {
                            IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0, u16::from(host)])
                        },
                        first_seen: at(second),
                        last_seen: at(second + hits),
                        hits,
                    })
                    .collect();
                for u in &uses {
                    expected.entry(u.row()).and_modify(|p| p.merge(Pending::from(u))).or_insert(Pending::from(u));
                }
                merged.add(uses.into_iter());
            }
            let rows: Vec<_> =
                key_uses(&merged.into_sorted()).iter().map(|u| (u.row(), u.first_seen, u.last_seen, u.hits)).collect();
            let expected: Vec<_> =
                expected.into_iter().map(|(row, p)| (row, p.first_seen, p.last_seen, p.hits)).collect();
            proptest::prop_assert_eq!(rows, expected);
        }
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
            key_uses(&merged.into_sorted()),
            vec![
                used(3, 1, home, 1, 1, 1),
                used(9, 1, home, 2, 6, 6),
                used(9, 1, work, 7, 7, 1),
                used(9, 2, home, 8, 8, 1)
            ]
        );
    }
}

#[cfg(test)]
mod merge_bench {
    use super::*;
    use std::net::IpAddr;

    /// What a fold's merge costs at 1,000,000 keys used uniformly: 620,000 uses in batches of a
    /// flush (20,000), through a room of `MERGE_ROOM`, stopping at `MAX_MERGED` rows as a fold
    /// does. `cargo test --release --lib merge_cost -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn merge_cost() {
        let at = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap().naive_utc();
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let batches: Vec<Vec<KeyUse>> = (0..31)
            .map(|_| {
                (0..20_000)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        let key_id = (x % 1_000_000) as i64;
                        KeyUse {
                            key_id,
                            agent_id: key_id % 5,
                            ip: IpAddr::from([198, 51, 100, 7]),
                            first_seen: at,
                            last_seen: at,
                            hits: 1,
                        }
                    })
                    .collect()
            })
            .collect();
        for round in 0..5 {
            let started = std::time::Instant::now();
            let mut merged = Merged::with_room(MERGE_ROOM);
            let mut read = 0;
            for batch in &batches {
                read += batch.len();
                merged.add(batch.iter().cloned());
                if merged.reaches(MAX_MERGED) {
                    break;
                }
            }
            let rows = merged.into_sorted().len();
            println!("round {round}: {read} uses into {rows} rows in {:.1} ms", started.elapsed().as_secs_f64() * 1e3);
        }
    }
}

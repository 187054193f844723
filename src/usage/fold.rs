//! The fold: the pending log merged into the usage table, in sorted batches, large merges
//! written back as pieces and folded one transaction each.

use super::{lock, FastMap, Pending, UsageRecorder};
use crate::db::usage::KeyUse;
use crate::db::{Db, DbResult};
use std::net::IpAddr;
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
/// such load shows usage up to this old.
const FOLD_EVERY: Duration = Duration::from_secs(30);

/// Pending batches (one flush each) one fold takes at most.
const BATCHES_PER_FOLD: i64 = 1_000;

/// A fold stops taking batches once it has merged this many (key, agent, address) rows, which
/// bounds its memory (about 150 bytes a row) however busy the site and however many keys…
const MAX_MERGED: usize = 150_000;

/// …or once it has read this many uses, which bounds how long it holds SQLite's one writer
/// while merging (about 50 ns a use).
const MAX_READ_USES: i64 = 2_000_000;

/// Upserts one transaction makes at most. More merged rows than this are written back to the
/// pending log as pieces of this size, in key order, in place of the batches they merge; each
/// piece is then folded in a transaction of its own, so that a fold never holds SQLite's writer
/// for long (10–15 µs an upsert) while every piece stays folded exactly once. The larger the
/// piece, the more of its rows share a page that the transaction writes once: with keys spread
/// over 1,000,000, pieces of 10,000 rows cost a quarter less a row than pieces of 5,000
/// (bench/fold_pieces.py), and hold the writer for about 150 ms.
const PIECE_ROWS: usize = 10_000;

/// How long one tick of the folder goes on before leaving the rest to the next tick.
const FOLD_TICK_BUDGET: Duration = Duration::from_millis(100);

/// Under sustained load the folder spends at most this share (in percent) of its time folding:
/// after a tick of background folding, it pauses for 3/2 of the tick's length. Folding
/// everything a busy site at 1,000,000 keys used in 30 s takes seconds of CPU; done in one go,
/// it took a whole core from the requests for those seconds. Spread out, it takes at most
/// this share, and a page's own fold or the shutdown's are not held back.
const FOLD_SHARE_PERCENT: u32 = 40;

#[derive(Default)]
pub(super) struct FoldState {
    last_fold: Option<Instant>,
    /// Background folding pauses until then (`FOLD_SHARE_PERCENT`).
    not_before: Option<Instant>,
    /// A fold left batches behind: the next tick goes on at once.
    catching_up: bool,
    /// Pieces of a merged fold still to be folded, in key order.
    pieces: std::collections::VecDeque<i64>,
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
        if how == Fold::WhenDue && state.not_before.is_some_and(|t| Instant::now() < t) {
            return Ok(0);
        }
        let started = Instant::now();
        let mut folded = 0;
        loop {
            let step = match state.pieces.pop_front() {
                Some(piece) => match db.write_quietly(|conn| fold_piece(conn, piece, &self.alerting)) {
                    Ok(uses) => FoldStep::Folded(uses),
                    Err(e) => {
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
                    let merged = db.write_quietly(|conn| merge_due_batches(conn, due, &self.alerting))?;
                    let Some((step, more)) = merged else { break };
                    state.catching_up = more;
                    if !more {
                        state.last_fold = Some(Instant::now());
                    }
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
                    let pause = super::pause_for_share(started.elapsed(), FOLD_SHARE_PERCENT);
                    state.not_before = Some(Instant::now() + pause);
                }
                break;
            }
            // Let a waiting append have the writer between two transactions.
            std::thread::yield_now();
        }
        Ok(folded)
    }
}

/// Takes the oldest pending batches if the log's length (in uses) is `due`, and merges them:
/// folded at once if they fit in one transaction, otherwise written back as pieces. Returns
/// what was done and whether batches were left behind.
fn merge_due_batches(
    conn: &mut crate::db::DbConn,
    due: impl Fn(i64) -> bool,
    alerting: &[String],
) -> DbResult<Option<(FoldStep, bool)>> {
    let (batches, uses) = crate::db::usage::backlog(conn)?;
    if batches == 0 || !due(uses) {
        return Ok(None);
    }
    let taken = crate::db::usage::take_pending(conn, BATCHES_PER_FOLD)?;
    if taken.is_empty() {
        return Ok(None); // another instance is folding them
    }
    let mut merged = Merged::default();
    let mut ids = Vec::with_capacity(taken.len());
    let mut read = 0;
    for id in taken {
        let batch = crate::db::usage::pending_batch(conn, id)?;
        read += (batch.len() / crate::db::usage::RECORD) as i64;
        merged.add(crate::db::usage::unpack(&batch));
        ids.push(id);
        if merged.len() >= MAX_MERGED || read >= MAX_READ_USES {
            break;
        }
    }
    let merged = merged.into_sorted();
    let step = if merged.len() <= PIECE_ROWS {
        let created = crate::db::usage::add_uses(conn, &merged)?;
        super::alerts::note_new_clients(conn, &created, alerting)?;
        FoldStep::Folded(merged)
    } else {
        let pieces =
            merged.chunks(PIECE_ROWS).map(|piece| crate::db::usage::append(conn, piece)).collect::<DbResult<_>>()?;
        FoldStep::Merged(pieces)
    };
    crate::db::usage::remove_pending(conn, &ids)?;
    Ok(Some((step, batches > ids.len())))
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

/// Uses merged to one row per (key, agent, address).
#[derive(Default)]
struct Merged(FastMap<(i64, i64, IpAddr), Pending>);

impl Merged {
    fn add(&mut self, uses: impl Iterator<Item = KeyUse>) {
        for u in uses {
            let p = Pending { first_seen: u.first_seen, last_seen: u.last_seen, hits: u.hits };
            self.0.entry((u.key_id, u.agent_id, u.ip)).and_modify(|m| m.merge(p)).or_insert(p);
        }
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    /// In key order, so that neighbouring upserts share pages.
    fn into_sorted(self) -> Vec<KeyUse> {
        let mut rows: Vec<KeyUse> = self
            .0
            .into_iter()
            .map(|((key_id, agent_id, ip), p)| KeyUse {
                key_id,
                agent_id,
                ip,
                first_seen: p.first_seen,
                last_seen: p.last_seen,
                hits: p.hits,
            })
            .collect();
        rows.sort_unstable_by_key(|u| (u.key_id, u.agent_id, u.ip));
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let mut merged = Merged::default();
        merged.add([used(9, 1, home, 5, 6, 2), used(3, 1, home, 1, 1, 1)].into_iter());
        merged.add([used(9, 1, home, 2, 3, 4), used(9, 1, work, 7, 7, 1), used(9, 2, home, 8, 8, 1)].into_iter());
        assert_eq!(merged.len(), 4);
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

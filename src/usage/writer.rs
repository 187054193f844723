//! The background threads that flush and fold, and the same steps run on demand: before a page
//! reads usage, and at shutdown.

use super::fold::Fold;
use super::UsageRecorder;
use crate::db::{Db, DbResult};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the writer thread appends what is pending: a crash loses at most about this much.
pub const FLUSH_EVERY: Duration = Duration::from_millis(250);

impl UsageRecorder {
    /// Before a page reads usage: this instance's uses written, and folded unless the site is
    /// so busy that the log is long (then the page shows what is folded, up to about a minute old).
    pub async fn settle(self: &Arc<Self>, db: &Db) -> DbResult<()> {
        let (recorder, db) = (self.clone(), db.clone());
        actix_web::web::block(move || {
            // Behind a long fold the page shows what is written rather than wait for it.
            if recorder.flush_within(&db, Some(Duration::from_millis(50)))?.is_none() {
                return Ok(());
            }
            if recorder.fold_blocking(&db, Fold::IfSmall)? > 0 {
                recorder.write_last_used_blocking(&db)?;
            }
            Ok(())
        })
        .await
        .map_err(|_| crate::db::DbError::Cancelled)?
    }

    /// Everything written and folded (graceful shutdown).
    pub fn finish_blocking(&self, db: &Db) -> DbResult<()> {
        self.flush_blocking(db)?;
        self.fold_blocking(db, Fold::All)?;
        while self.write_last_used_blocking(db)? > 0 {}
        Ok(())
    }
}

/// The threads that write usage in the background, apart from the blocking pool, so requests
/// waiting for the database never hold them up.
pub struct UsageWriter {
    stop: Vec<std::sync::mpsc::Sender<()>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl UsageWriter {
    /// Three threads: one appends every `FLUSH_EVERY`, one folds when due, so a long fold
    /// never delays an append, and one writes keys' "last used" marks, each at its own pace.
    pub fn spawn(recorder: Arc<UsageRecorder>, db: Db) -> std::io::Result<Self> {
        let mut writer = UsageWriter { stop: Vec::new(), threads: Vec::new() };
        let (r, d) = (recorder.clone(), db.clone());
        writer.every("usage-writer", move || {
            let started = Instant::now();
            match r.flush_blocking(&d) {
                Ok(0) => {}
                Ok(rows) => tracing::debug!(rows, ms = started.elapsed().as_millis() as u64, "usage appended"),
                Err(e) => tracing::warn!(error = %e, "writing usage failed; will retry"),
            }
            None
        })?;
        let (r, d) = (recorder.clone(), db.clone());
        writer.every("usage-folder", move || {
            let started = Instant::now();
            match r.fold_blocking(&d, Fold::WhenDue) {
                Ok(0) => {}
                Ok(rows) => tracing::debug!(rows, ms = started.elapsed().as_millis() as u64, "usage folded"),
                Err(e) => {
                    tracing::warn!(error = %e, "folding usage failed; will retry");
                    return Some(FLUSH_EVERY);
                }
            }
            // A fold that left work goes on after its pause, not at the next beat.
            r.next_fold_in()
        })?;
        writer.every("usage-marks", move || {
            if let Err(e) = recorder.write_last_used_paced(&db) {
                tracing::warn!(error = %e, "writing keys' last use failed; will retry");
            }
            None
        })?;
        Ok(writer)
    }

    /// A thread that runs `work` every `FLUSH_EVERY`, or as much later after a run as it says.
    fn every(
        &mut self,
        name: &str,
        mut work: impl FnMut() -> Option<Duration> + Send + 'static,
    ) -> std::io::Result<()> {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new().name(name.into()).spawn(move || {
            let mut wait = FLUSH_EVERY;
            loop {
                match stopped.recv_timeout(wait) {
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                    _ => return,
                }
                let started = Instant::now();
                wait = work().unwrap_or_else(|| FLUSH_EVERY.saturating_sub(started.elapsed()));
            }
        })?;
        self.stop.push(stop);
        self.threads.push(thread);
        Ok(())
    }

    /// Stops the threads once their current write is done (blocks until then).
    pub fn stop(self) {
        for stop in &self.stop {
            let _ = stop.send(());
        }
        for thread in self.threads {
            let _ = thread.join();
        }
    }
}

//! What a committed write made invalid, and the write handle that records it.
//!
//! A query that can make a valid key invalid (revoking, expiring, suspending its owner,
//! switching its service or type off) takes a `&mut Write`, not a bare connection, and says on
//! it what it invalidates. `Write` only exists inside `Db::write`, which drops what was recorded
//! from the caches once the transaction commits and before the writer answers. Reads and quiet
//! writes get a bare `DbConn`, so such a query cannot be called where it would be forgotten.

use super::DbConn;

/// Which valid keys a committed write may have made invalid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Invalidation {
    /// Anything (a service or key type switched off, a service's functions changed).
    All,
    Keys(Vec<i64>),
    /// Every key of these users (suspended).
    Users(Vec<i64>),
}

impl Invalidation {
    fn merge(self, other: Invalidation) -> Invalidation {
        use Invalidation::*;
        match (self, other) {
            (Keys(mut a), Keys(b)) => {
                a.extend(b);
                Keys(a)
            }
            (Users(mut a), Users(b)) => {
                a.extend(b);
                Users(a)
            }
            _ => All,
        }
    }
}

/// Told of each committed invalidating write, before the writer's caller sees the result.
pub type InvalidationListener = std::sync::Arc<dyn Fn(&Invalidation) + Send + Sync>;

/// A write transaction in progress. Dereferences to its connection for ordinary queries.
pub struct Write<'c> {
    conn: &'c mut DbConn,
    invalidated: Option<Invalidation>,
}

impl<'c> Write<'c> {
    pub(super) fn new(conn: &'c mut DbConn) -> Self {
        Write { conn, invalidated: None }
    }

    /// Records that this write, once committed, makes `what` invalid.
    pub fn invalidates(&mut self, what: Invalidation) {
        self.invalidated = Some(match self.invalidated.take() {
            Some(before) => before.merge(what),
            None => what,
        });
    }

    pub(super) fn invalidated(&self) -> Option<&Invalidation> {
        self.invalidated.as_ref()
    }

    pub(super) fn into_invalidated(self) -> Option<Invalidation> {
        self.invalidated
    }
}

impl std::ops::Deref for Write<'_> {
    type Target = DbConn;
    fn deref(&self) -> &DbConn {
        self.conn
    }
}

impl std::ops::DerefMut for Write<'_> {
    fn deref_mut(&mut self) -> &mut DbConn {
        self.conn
    }
}

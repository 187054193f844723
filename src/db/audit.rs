use super::models::NewAuditEntry;
use super::schema::audit_log;
use super::{DbConn, DbResult};
use diesel::prelude::*;

/// The only write the application makes to the audit trail: it appends.
pub fn append(conn: &mut DbConn, entry: &NewAuditEntry) -> DbResult<()> {
    diesel::insert_into(audit_log::table).values(entry).execute(conn)?;
    Ok(())
}

//! Site-wide on/off switches for key types.

use super::schema::key_type_settings;
use super::{DbConn, DbResult};
use diesel::prelude::*;

/// Whether a key type is on; `default` when the site has not set it.
pub fn enabled(conn: &mut DbConn, key_type: &str, default: bool) -> DbResult<bool> {
    Ok(key_type_settings::table
        .find(key_type)
        .select(key_type_settings::enabled)
        .first(conn)
        .optional()?
        .unwrap_or(default))
}

pub fn all(conn: &mut DbConn) -> DbResult<Vec<(String, bool)>> {
    Ok(key_type_settings::table.select((key_type_settings::key_type, key_type_settings::enabled)).load(conn)?)
}

pub fn set_enabled(write: &mut super::Write, key_type: &str, enabled: bool) -> DbResult<()> {
    write.invalidates(super::Invalidation::All);
    let conn: &mut DbConn = write;
    let updated = diesel::update(key_type_settings::table.find(key_type))
        .set(key_type_settings::enabled.eq(enabled))
        .execute(conn)?;
    if updated == 0 {
        diesel::insert_into(key_type_settings::table)
            .values((key_type_settings::key_type.eq(key_type), key_type_settings::enabled.eq(enabled)))
            .execute(conn)?;
    }
    Ok(())
}

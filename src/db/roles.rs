use super::schema::{role_capabilities, roles, user_roles};
use super::{DbConn, DbResult};
use diesel::prelude::*;

/// Capability names granted to a user through their roles.
pub fn capabilities_of(conn: &mut DbConn, user_id: i64) -> DbResult<Vec<String>> {
    Ok(user_roles::table
        .inner_join(role_capabilities::table.on(role_capabilities::role_id.eq(user_roles::role_id)))
        .filter(user_roles::user_id.eq(user_id))
        .select(role_capabilities::capability)
        .distinct()
        .load(conn)?)
}

/// Creates the role with these capabilities if it does not exist yet.
pub fn ensure(conn: &mut DbConn, shortname: &str, name: &str, capabilities: &[&str]) -> DbResult<i64> {
    if let Some(id) = find(conn, shortname)? {
        return Ok(id);
    }
    let id = diesel::insert_into(roles::table)
        .values((roles::shortname.eq(shortname), roles::name.eq(name)))
        .returning(roles::id)
        .get_result(conn)?;
    for capability in capabilities {
        diesel::insert_into(role_capabilities::table)
            .values((role_capabilities::role_id.eq(id), role_capabilities::capability.eq(*capability)))
            .execute(conn)?;
    }
    Ok(id)
}

pub fn find(conn: &mut DbConn, shortname: &str) -> DbResult<Option<i64>> {
    Ok(roles::table.filter(roles::shortname.eq(shortname)).select(roles::id).first(conn).optional()?)
}

pub fn assign(conn: &mut DbConn, user_id: i64, role_id: i64) -> DbResult<()> {
    let exists: i64 = user_roles::table
        .filter(user_roles::user_id.eq(user_id))
        .filter(user_roles::role_id.eq(role_id))
        .count()
        .get_result(conn)?;
    if exists == 0 {
        diesel::insert_into(user_roles::table)
            .values((user_roles::user_id.eq(user_id), user_roles::role_id.eq(role_id)))
            .execute(conn)?;
    }
    Ok(())
}

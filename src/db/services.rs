use super::models::Service;
use super::schema::{service_functions, services};
use super::{DbConn, DbResult};
use chrono::NaiveDateTime;
use diesel::prelude::*;

pub fn find_by_shortname(conn: &mut DbConn, shortname: &str) -> DbResult<Option<Service>> {
    Ok(services::table.filter(services::shortname.eq(shortname)).select(Service::as_select()).first(conn).optional()?)
}

pub fn find(conn: &mut DbConn, id: i64) -> DbResult<Option<Service>> {
    Ok(services::table.find(id).select(Service::as_select()).first(conn).optional()?)
}

pub fn all(conn: &mut DbConn) -> DbResult<Vec<Service>> {
    Ok(services::table.order(services::name).select(Service::as_select()).load(conn)?)
}

pub fn functions(conn: &mut DbConn, service_id: i64) -> DbResult<Vec<String>> {
    Ok(service_functions::table
        .filter(service_functions::service_id.eq(service_id))
        .order(service_functions::function_name)
        .select(service_functions::function_name)
        .load(conn)?)
}

/// Creates the service if missing and adds any function it lacks; leaves `enabled` alone
/// when the service exists, so an admin's choice survives restarts.
pub fn ensure(
    write: &mut super::Write,
    shortname: &str,
    name: &str,
    enabled: bool,
    function_names: &[&str],
    now: NaiveDateTime,
) -> DbResult<i64> {
    write.invalidates(super::Invalidation::All);
    let conn: &mut DbConn = write;
    let id = match find_by_shortname(conn, shortname)? {
        Some(s) => s.id,
        None => diesel::insert_into(services::table)
            .values((
                services::shortname.eq(shortname),
                services::name.eq(name),
                services::enabled.eq(enabled),
                services::download_files.eq(true),
                services::upload_files.eq(true),
                services::created_at.eq(now),
            ))
            .returning(services::id)
            .get_result(conn)?,
    };
    let existing = functions(conn, id)?;
    for f in function_names.iter().filter(|f| !existing.iter().any(|e| e == *f)) {
        diesel::insert_into(service_functions::table)
            .values((service_functions::service_id.eq(id), service_functions::function_name.eq(*f)))
            .execute(conn)?;
    }
    Ok(id)
}

pub fn set_enabled(write: &mut super::Write, id: i64, enabled: bool) -> DbResult<usize> {
    write.invalidates(super::Invalidation::All);
    let conn: &mut DbConn = write;
    Ok(diesel::update(services::table.find(id)).set(services::enabled.eq(enabled)).execute(conn)?)
}

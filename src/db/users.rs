use super::models::{NewUser, User};
use super::schema::users;
use super::{DbConn, DbResult};
use diesel::prelude::*;

pub fn find_by_username(conn: &mut DbConn, username: &str) -> DbResult<Option<User>> {
    let username = super::storable(username);
    let username = username.as_ref();
    Ok(users::table.filter(users::username.eq(username)).select(User::as_select()).first(conn).optional()?)
}

pub fn find(conn: &mut DbConn, id: i64) -> DbResult<Option<User>> {
    Ok(users::table.find(id).select(User::as_select()).first(conn).optional()?)
}

pub fn insert(conn: &mut DbConn, user: &NewUser) -> DbResult<i64> {
    Ok(diesel::insert_into(users::table).values(user).returning(users::id).get_result(conn)?)
}

pub fn count_site_admins(conn: &mut DbConn) -> DbResult<i64> {
    Ok(users::table.filter(users::is_site_admin.eq(true)).count().get_result(conn)?)
}

pub fn set_suspended(write: &mut super::Write, id: i64, suspended: bool) -> DbResult<usize> {
    write.invalidates(super::Invalidation::Users(vec![id]));
    let conn: &mut DbConn = write;
    Ok(diesel::update(users::table.find(id)).set(users::suspended.eq(suspended)).execute(conn)?)
}

pub fn names(conn: &mut DbConn, ids: &[i64]) -> DbResult<std::collections::HashMap<i64, String>> {
    Ok(users::table
        .filter(users::id.eq_any(ids))
        .select((users::id, users::username))
        .load::<(i64, String)>(conn)?
        .into_iter()
        .collect())
}

/// Full names by id (as a page names who issued a key).
pub fn names_full(conn: &mut DbConn, ids: &[i64]) -> DbResult<std::collections::HashMap<i64, String>> {
    Ok(users::table
        .filter(users::id.eq_any(ids))
        .select((users::id, users::fullname))
        .load::<(i64, String)>(conn)?
        .into_iter()
        .collect())
}

/// Site admins who are not suspended.
pub fn count_active_site_admins(conn: &mut DbConn) -> DbResult<i64> {
    Ok(users::table
        .filter(users::is_site_admin.eq(true))
        .filter(users::suspended.eq(false))
        .count()
        .get_result(conn)?)
}

/// Replaces a user's password hash (argon2id, made by the caller).
pub fn set_password_hash(conn: &mut DbConn, id: i64, hash: &str) -> DbResult<usize> {
    Ok(diesel::update(users::table.find(id)).set(users::password_hash.eq(hash)).execute(conn)?)
}

/// The accounts with this email address (lowercased on both sides).
pub fn find_by_email(conn: &mut DbConn, email: &str) -> DbResult<Vec<User>> {
    let email = super::storable(email);
    Ok(users::table
        .filter(
            diesel::dsl::sql::<diesel::sql_types::Bool>("lower(email) = ")
                .bind::<diesel::sql_types::Text, _>(email.to_lowercase()),
        )
        .select(User::as_select())
        .limit(10)
        .load(conn)?)
}

//! Failed sign-ins, for throttling: reserved before the password is checked, kept if it was
//! wrong, removed if it was right.

use super::schema::sign_in_failures;
use super::{DbConn, DbResult};
use crate::domain::throttle::Failures;
use chrono::NaiveDateTime;
use diesel::dsl::{count_star, max, min};
use diesel::prelude::*;

/// Makes concurrent reservations wait for each other until this transaction ends, so that each
/// counts the ones before it. SQLite has one writer, which does that already.
pub fn serialise(conn: &mut DbConn) -> DbResult<()> {
    if let DbConn::Pg(pg) = conn {
        // Any fixed number: the lock stands for "the sign-in throttle".
        diesel::sql_query("SELECT pg_advisory_xact_lock(7220116119)").execute(pg)?;
    }
    Ok(())
}

/// Failures since `since` around an attempt on `login` from `ip`.
pub fn around(conn: &mut DbConn, login: &str, ip: &str, since: NaiveDateTime) -> DbResult<Failures> {
    let login = super::storable(login);
    let login = login.as_ref();
    let recent = sign_in_failures::table.filter(sign_in_failures::at.ge(since));
    let (account, account_latest): (i64, Option<NaiveDateTime>) = recent
        .filter(sign_in_failures::login.eq(login))
        .select((count_star(), max(sign_in_failures::at)))
        .first(conn)?;
    let (account_and_address, account_and_address_oldest): (i64, Option<NaiveDateTime>) = recent
        .filter(sign_in_failures::login.eq(login))
        .filter(sign_in_failures::ip.eq(ip))
        .select((count_star(), min(sign_in_failures::at)))
        .first(conn)?;
    // Only checked failures count against a whole address: many people may sign in from one
    // (a school behind one router) at the same moment.
    let (address, address_oldest): (i64, Option<NaiveDateTime>) = recent
        .filter(sign_in_failures::ip.eq(ip))
        .filter(sign_in_failures::checked.eq(true))
        .select((count_star(), min(sign_in_failures::at)))
        .first(conn)?;
    Ok(Failures { account_and_address, address, account, account_latest, account_and_address_oldest, address_oldest })
}

pub fn reserve(conn: &mut DbConn, login: &str, ip: &str, at: NaiveDateTime) -> DbResult<i64> {
    let login = super::storable(login);
    let login = login.as_ref();
    Ok(diesel::insert_into(sign_in_failures::table)
        .values((sign_in_failures::login.eq(login), sign_in_failures::ip.eq(ip), sign_in_failures::at.eq(at)))
        .returning(sign_in_failures::id)
        .get_result(conn)?)
}

/// The password was checked and wrong: the reservation is a failure now.
pub fn confirm(conn: &mut DbConn, id: i64) -> DbResult<()> {
    diesel::update(sign_in_failures::table.find(id)).set(sign_in_failures::checked.eq(true)).execute(conn)?;
    Ok(())
}

/// The password was right: the reservation was not a failure.
pub fn release(conn: &mut DbConn, id: i64) -> DbResult<()> {
    diesel::delete(sign_in_failures::table.find(id)).execute(conn)?;
    Ok(())
}

/// Forgets failures too old to count.
pub fn forget_before(conn: &mut DbConn, before: NaiveDateTime) -> DbResult<usize> {
    Ok(diesel::delete(sign_in_failures::table.filter(sign_in_failures::at.lt(before))).execute(conn)?)
}

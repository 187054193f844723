use super::models::{KeyCheckRow, KeyRow, NewKey, User};
use super::schema::{key_last_use, user_keys, users};
use super::{DbConn, DbResult};
use chrono::NaiveDateTime;
use diesel::prelude::*;

pub fn insert(conn: &mut DbConn, key: &NewKey) -> DbResult<i64> {
    let clean = |t: &Option<String>| t.as_deref().map(|t| super::storable(t).into_owned());
    let key = &NewKey {
        name: super::storable(&key.name).into_owned(),
        device_id: clean(&key.device_id),
        details: clean(&key.details),
        ..key.clone()
    };
    Ok(diesel::insert_into(user_keys::table).values(key).returning(user_keys::id).get_result(conn)?)
}

/// The statement of `find_by_secret_hash`. A macro, not a function: each backend needs the query
/// typed for itself.
macro_rules! key_by_secret_hash {
    ($hash:expr) => {
        user_keys::table
            .inner_join(users::table)
            .left_join(
                crate::db::schema::key_type_settings::table
                    .on(crate::db::schema::key_type_settings::key_type.eq(user_keys::key_type)),
            )
            .filter(user_keys::secret_hash.eq($hash))
            .select((
                KeyCheckRow::as_select(),
                User::as_select(),
                crate::db::schema::key_type_settings::enabled.nullable(),
            ))
    };
}

/// The key with this secret's hash, whatever its state, its owner, and whether its type is switched on (`None`:
/// never set, so the type's default): one statement, as a token's every cache miss reads it.
pub fn find_by_secret_hash(conn: &mut DbConn, hash: &str) -> DbResult<Option<(KeyCheckRow, User, Option<bool>)>> {
    // Run on the backend's own connection: there the query's type is its key in the statement
    // cache. Through the multi-backend connection the key is the query's SQL, built anew from
    // the query on every call, which was two fifths of a cache miss's cost at 10,000,000 tokens.
    let found = match conn {
        DbConn::Sqlite(conn) => key_by_secret_hash!(hash).get_result(conn),
        DbConn::Pg(conn) => key_by_secret_hash!(hash).get_result(conn),
    };
    Ok(found.optional()?)
}

pub fn find(conn: &mut DbConn, id: i64) -> DbResult<Option<KeyRow>> {
    Ok(user_keys::table
        .inner_join(key_last_use::table)
        .filter(user_keys::id.eq(id))
        .select(KeyRow::as_select())
        .first(conn)
        .optional()?)
}

/// A key that still opens something: not revoked and not past its expiry. The one definition
/// of "active" every query shares.
#[diesel::dsl::auto_type]
pub(super) fn is_active(now: NaiveDateTime) -> _ {
    user_keys::revoked_at.is_null().and(user_keys::valid_until.is_null().or(user_keys::valid_until.gt(now)))
}

/// `is_active`, of a row read whole: keep the two in step.
fn row_is_active(key: &KeyRow, now: NaiveDateTime) -> bool {
    key.revoked_at.is_none() && key.valid_until.is_none_or(|until| until > now)
}

/// A user's keys that still open the account.
#[diesel::dsl::auto_type]
fn active_of_user(user_id: i64, now: NaiveDateTime) -> _ {
    let active: is_active = is_active(now);
    user_keys::table.filter(user_keys::user_id.eq(user_id)).filter(active)
}

pub fn active_for_user(conn: &mut DbConn, user_id: i64, now: NaiveDateTime) -> DbResult<Vec<KeyRow>> {
    Ok(active_of_user(user_id, now)
        .inner_join(key_last_use::table)
        .order((user_keys::key_type, user_keys::created_at.desc(), user_keys::id.desc()))
        .select(KeyRow::as_select())
        .load(conn)?)
}

/// A user's active keys as a page lists them: how many there are of each type, and the newest
/// `per_type` of each (all of the type `all_of`), so a person with a thousand keys costs a page
/// a few dozen rows rather than a thousand.
pub fn listed_for_user(
    conn: &mut DbConn,
    user_id: i64,
    now: NaiveDateTime,
    per_type: i64,
    all_of: Option<&str>,
) -> DbResult<(Vec<KeyRow>, Vec<(String, i64)>)> {
    let counts: Vec<(String, i64)> = active_of_user(user_id, now)
        .group_by(user_keys::key_type)
        .select((user_keys::key_type, diesel::dsl::count_star()))
        .order(user_keys::key_type)
        .load(conn)?;
    let mut keys = Vec::new();
    for (key_type, _) in &counts {
        let newest = active_of_user(user_id, now)
            .inner_join(key_last_use::table)
            .filter(user_keys::key_type.eq(key_type))
            .order((user_keys::created_at.desc(), user_keys::id.desc()))
            .select(KeyRow::as_select());
        keys.extend(match all_of == Some(key_type.as_str()) {
            true => newest.load(conn)?,
            false => newest.limit(per_type).load(conn)?,
        });
    }
    Ok((keys, counts))
}

/// Which of a user's keys a revocation applies to.
#[derive(Clone, Debug)]
pub enum Selection {
    One(i64),
    OfType(String),
    /// A type's keys but one (the session asking).
    OfTypeExcept(String, i64),
    /// Keys of any of these types, but one (the session asking).
    OfTypesExcept(Vec<String>, Option<i64>),
    AllExcept(Option<i64>),
    /// The per-device token(s) a device holds for a service.
    Device {
        device_id: String,
        key_type: String,
        service_id: Option<i64>,
    },
}

/// Marks the selected, not yet revoked keys of `user_id` revoked; returns (id, type) of each.
/// Keys of other users are never matched, whatever the selection says.
pub fn revoke(
    write: &mut super::Write,
    user_id: i64,
    selection: &Selection,
    protected_types: &[String],
    revoked_by: Option<i64>,
    reason: &str,
    now: NaiveDateTime,
) -> DbResult<Vec<(i64, String)>> {
    let mut query = user_keys::table
        .filter(user_keys::user_id.eq(user_id))
        .filter(user_keys::revoked_at.is_null())
        .select((user_keys::id, user_keys::key_type))
        .into_boxed();
    if !protected_types.is_empty() {
        query = query.filter(user_keys::key_type.ne_all(protected_types.to_vec()));
    }
    query = match selection {
        Selection::One(id) => query.filter(user_keys::id.eq(*id)),
        Selection::OfType(t) => query.filter(user_keys::key_type.eq(t.clone())),
        Selection::OfTypeExcept(t, id) => query.filter(user_keys::key_type.eq(t.clone())).filter(user_keys::id.ne(*id)),
        Selection::OfTypesExcept(types, except) => {
            let q = query.filter(user_keys::key_type.eq_any(types.clone()));
            match except {
                Some(id) => q.filter(user_keys::id.ne(*id)),
                None => q,
            }
        }
        Selection::AllExcept(Some(id)) => query.filter(user_keys::id.ne(*id)),
        Selection::AllExcept(None) => query,
        Selection::Device { device_id, key_type, service_id } => {
            let q = query
                .filter(user_keys::device_id.eq(device_id.clone()))
                .filter(user_keys::key_type.eq(key_type.clone()));
            match service_id {
                Some(s) => q.filter(user_keys::service_id.eq(*s)),
                None => q,
            }
        }
    };
    let targets: Vec<(i64, String)> = query.load(&mut **write)?;
    if !targets.is_empty() {
        write.invalidates(super::Invalidation::Keys(targets.iter().map(|(id, _)| *id).collect()));
        let conn: &mut DbConn = write;
        let ids: Vec<i64> = targets.iter().map(|(id, _)| *id).collect();
        diesel::update(user_keys::table.filter(user_keys::id.eq_any(&ids)).filter(user_keys::revoked_at.is_null()))
            .set((
                user_keys::revoked_at.eq(now),
                user_keys::revoked_by.eq(revoked_by),
                user_keys::revoked_reason.eq(reason),
            ))
            .execute(conn)?;
    }
    Ok(targets)
}

/// Slides a web session's expiry forward (which cannot make any key invalid).
pub fn extend(conn: &mut DbConn, id: i64, valid_until: NaiveDateTime) -> DbResult<()> {
    diesel::update(user_keys::table.find(id).filter(user_keys::revoked_at.is_null()))
        .set(user_keys::valid_until.eq(valid_until))
        .execute(conn)?;
    Ok(())
}

/// Sets a key's expiry to any time, earlier ones included.
pub fn set_valid_until(write: &mut super::Write, id: i64, valid_until: NaiveDateTime) -> DbResult<()> {
    write.invalidates(super::Invalidation::Keys(vec![id]));
    let conn: &mut DbConn = write;
    diesel::update(user_keys::table.find(id)).set(user_keys::valid_until.eq(valid_until)).execute(conn)?;
    Ok(())
}

/// Marks an expired key as reported to its client; false if it was already (another request
/// or instance told it first) or is not expired.
pub fn report_expiry(write: &mut super::Write, id: i64, now: NaiveDateTime) -> DbResult<bool> {
    write.invalidates(super::Invalidation::Keys(vec![id]));
    let conn: &mut DbConn = write;
    let marked = diesel::update(
        user_keys::table
            .find(id)
            .filter(user_keys::expiry_reported_at.is_null())
            .filter(user_keys::valid_until.le(now)),
    )
    .set(user_keys::expiry_reported_at.eq(now))
    .execute(conn)?;
    Ok(marked == 1)
}

/// Replaces a key's IP restriction (stored form, see `IpRestriction::to_stored`).
pub fn set_ip_restriction(write: &mut super::Write, id: i64, restriction: Option<&str>) -> DbResult<()> {
    write.invalidates(super::Invalidation::Keys(vec![id]));
    let conn: &mut DbConn = write;
    diesel::update(user_keys::table.find(id)).set(user_keys::ip_restriction.eq(restriction)).execute(conn)?;
    Ok(())
}

pub fn rename(conn: &mut DbConn, id: i64, name: &str, details: Option<&str>) -> DbResult<()> {
    let (name, details) = (super::storable(name), details.map(super::storable));
    let (name, details) = (name.as_ref(), details.as_deref());
    diesel::update(user_keys::table.find(id))
        .set((user_keys::name.eq(name), user_keys::details.eq(details)))
        .execute(conn)?;
    Ok(())
}

/// Ties a key to the device it is on, with the device's name and details (cannot make a key
/// invalid).
pub fn link_device(conn: &mut DbConn, id: i64, device_id: &str, name: &str, details: &str) -> DbResult<()> {
    let (device_id, name, details) = (super::storable(device_id), super::storable(name), super::storable(details));
    let (device_id, name, details) = (device_id.as_ref(), name.as_ref(), details.as_ref());
    diesel::update(user_keys::table.find(id))
        .set((user_keys::device_id.eq(device_id), user_keys::name.eq(name), user_keys::details.eq(details)))
        .execute(conn)?;
    Ok(())
}

/// Active keys of a type and device for a user (e.g. the push registration of a phone).
pub fn active_for_device(conn: &mut DbConn, user_id: i64, key_type: &str, device_id: &str) -> DbResult<Vec<KeyRow>> {
    let device_id = super::storable(device_id);
    let device_id = device_id.as_ref();
    Ok(user_keys::table
        .inner_join(key_last_use::table)
        .filter(user_keys::user_id.eq(user_id))
        .filter(user_keys::key_type.eq(key_type))
        .filter(user_keys::device_id.eq(device_id))
        .filter(user_keys::revoked_at.is_null())
        .select(KeyRow::as_select())
        .load(conn)?)
}

/// When the user's newest key of a type was issued (revoked or not).
pub fn latest_created(conn: &mut DbConn, user_id: i64, key_type: &str) -> DbResult<Option<NaiveDateTime>> {
    Ok(user_keys::table
        .filter(user_keys::user_id.eq(user_id))
        .filter(user_keys::key_type.eq(key_type))
        .order(user_keys::created_at.desc())
        .select(user_keys::created_at)
        .first(conn)
        .optional()?)
}

/// For warming a cache: the next `limit` keys after `after_id`, by id, and of them the active
/// keys of `key_type` (web-service tokens) with their owners; with the last id read (`None` past
/// the last key). The keys are read as a range of the primary key and sifted here: given the type
/// and "not revoked" to filter on, SQLite's sampled statistics led its planner to an index of
/// either that it then read whole and sorted (230 ms a chunk at 1,000,000 keys, 5 ms this way).
pub fn active_of_type_after(
    conn: &mut DbConn,
    key_type: &str,
    after_id: i64,
    limit: i64,
    now: NaiveDateTime,
) -> DbResult<(Vec<(KeyRow, User)>, Option<i64>)> {
    let rows: Vec<(KeyRow, User)> = user_keys::table
        .inner_join(users::table)
        .inner_join(key_last_use::table)
        .filter(user_keys::id.gt(after_id))
        .order(user_keys::id)
        .limit(limit)
        .select((KeyRow::as_select(), User::as_select()))
        .load(conn)?;
    let last = rows.last().map(|(key, _)| key.id);
    let active = rows.into_iter().filter(|(key, _)| key.key_type == key_type && row_is_active(key, now)).collect();
    Ok((active, last))
}

/// Active keys of a type, or of a service, and how many people hold them: what switching the
/// type or service off stops.
pub fn count_active(
    conn: &mut DbConn,
    key_type: Option<&str>,
    service_id: Option<i64>,
    now: NaiveDateTime,
) -> DbResult<(i64, i64)> {
    let mut query = user_keys::table.filter(is_active(now)).into_boxed();
    if let Some(t) = key_type {
        query = query.filter(user_keys::key_type.eq(t.to_owned()));
    }
    if let Some(s) = service_id {
        query = query.filter(user_keys::service_id.eq(s));
    }
    let owners: Vec<i64> = query.select(user_keys::user_id).load(conn)?;
    let keys = owners.len() as i64;
    let mut people = owners;
    people.sort_unstable();
    people.dedup();
    Ok((keys, people.len() as i64))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A token-cache miss is a few reads by index, whatever the site's size: the key by its
    /// secret's hash, its owner and its type's switch by their keys, and nothing more.
    #[test]
    fn a_secret_is_looked_up_by_indexes_alone() {
        #[derive(diesel::QueryableByName)]
        struct Step {
            #[diesel(sql_type = diesel::sql_types::Text)]
            detail: String,
        }
        let hash = "ab".repeat(32);
        let statement =
            diesel::debug_query::<diesel::sqlite::Sqlite, _>(&key_by_secret_hash!(hash.as_str())).to_string();
        let statement = statement.split(" -- binds:").next().unwrap().to_owned();
        let dir = tempfile::tempdir().unwrap();
        let db = crate::db::Db::connect(&format!("sqlite://{}", dir.path().join("plan.sqlite3").display()), 2).unwrap();
        let plan: Vec<String> = db
            .read_blocking(move |conn| {
                Ok(diesel::sql_query(format!("EXPLAIN QUERY PLAN {statement}"))
                    .bind::<diesel::sql_types::Text, _>(hash)
                    .load::<Step>(conn)?)
            })
            .unwrap()
            .into_iter()
            .map(|step| step.detail)
            .collect();
        assert_eq!(plan.len(), 3, "{plan:?}");
        assert!(plan.iter().all(|step| step.starts_with("SEARCH ")), "no table is scanned: {plan:?}");
        assert!(plan[0].contains("user_keys") && plan[0].contains("(secret_hash=?)"), "{plan:?}");
        assert!(plan.iter().all(|step| !step.contains("key_last_use")), "{plan:?}");
    }
}

//! New-client alerts: a key used by a client or from a network new to it. Written as usage is
//! folded, shown to the owner until dismissed or the key is revoked, mailed by a background job
//! that claims an alert before sending, so that an alert is mailed once however many instances
//! run, and a failed mail is tried again.

use super::schema::{client_alerts, user_keys, users};
use super::{DbConn, DbResult};
use chrono::{Duration, NaiveDateTime};
use diesel::prelude::*;

#[derive(Insertable, Clone, Debug)]
#[diesel(table_name = client_alerts)]
pub struct NewClientAlert {
    pub key_id: i64,
    pub user_id: i64,
    pub agent: String,
    pub ip: String,
    pub new_client: bool,
    pub first_seen: NaiveDateTime,
    pub created_at: NaiveDateTime,
}

#[derive(Queryable, Selectable, Clone, Debug)]
#[diesel(table_name = client_alerts)]
pub struct ClientAlertRow {
    pub id: i64,
    pub key_id: i64,
    pub user_id: i64,
    pub agent: String,
    pub ip: String,
    pub new_client: bool,
    pub first_seen: NaiveDateTime,
    pub created_at: NaiveDateTime,
    pub dismissed_at: Option<NaiveDateTime>,
    pub mailed_at: Option<NaiveDateTime>,
}

/// An alert with what its key is called.
#[derive(Clone, Debug)]
pub struct AlertOnKey {
    pub alert: ClientAlertRow,
    pub key_name: String,
    pub key_type: String,
}

pub fn insert(conn: &mut DbConn, alerts: &[NewClientAlert]) -> DbResult<()> {
    let alerts: Vec<NewClientAlert> =
        alerts.iter().map(|a| NewClientAlert { agent: super::storable(&a.agent).into_owned(), ..a.clone() }).collect();
    // One by one: a fold finds a few at most, and a batch insert is not for both backends at once.
    for alert in &alerts {
        diesel::insert_into(client_alerts::table).values(alert).execute(conn)?;
    }
    Ok(())
}

/// A person's alerts not dismissed, on keys not revoked, newest first.
pub fn open_for_user(conn: &mut DbConn, user_id: i64, limit: i64) -> DbResult<Vec<AlertOnKey>> {
    let rows: Vec<(ClientAlertRow, String, String)> = client_alerts::table
        .inner_join(user_keys::table)
        .filter(client_alerts::user_id.eq(user_id))
        .filter(client_alerts::dismissed_at.is_null())
        .filter(user_keys::revoked_at.is_null())
        .order(client_alerts::id.desc())
        .limit(limit)
        .select((ClientAlertRow::as_select(), user_keys::name, user_keys::key_type))
        .load(conn)?;
    Ok(rows.into_iter().map(|(alert, key_name, key_type)| AlertOnKey { alert, key_name, key_type }).collect())
}

/// One of a person's alerts, whatever its state.
pub fn find_for_user(conn: &mut DbConn, user_id: i64, id: i64) -> DbResult<Option<AlertOnKey>> {
    let row: Option<(ClientAlertRow, String, String)> = client_alerts::table
        .inner_join(user_keys::table)
        .filter(client_alerts::id.eq(id))
        .filter(client_alerts::user_id.eq(user_id))
        .select((ClientAlertRow::as_select(), user_keys::name, user_keys::key_type))
        .first(conn)
        .optional()?;
    Ok(row.map(|(alert, key_name, key_type)| AlertOnKey { alert, key_name, key_type }))
}

/// Marks one of a person's alerts seen ("It was me"); false if it was already.
pub fn dismiss(conn: &mut DbConn, user_id: i64, id: i64, now: NaiveDateTime) -> DbResult<bool> {
    let changed = diesel::update(
        client_alerts::table
            .filter(client_alerts::id.eq(id))
            .filter(client_alerts::user_id.eq(user_id))
            .filter(client_alerts::dismissed_at.is_null()),
    )
    .set(client_alerts::dismissed_at.eq(now))
    .execute(conn)?;
    Ok(changed == 1)
}

/// How long an instance's claim on alerts to mail holds before another may take them.
pub const CLAIM_HOLDS_MINUTES: i64 = 10;

/// Alerts to mail, per key, claimed for this instance (call inside a transaction): alerts not
/// mailed, not dismissed, on keys not revoked, whose key had no mail within `every`, not claimed
/// by another instance meanwhile. At most `keys` keys. Each with the owner's name and address.
pub fn claim_due(
    conn: &mut DbConn,
    now: NaiveDateTime,
    every: Duration,
    keys: i64,
) -> DbResult<Vec<(Vec<AlertOnKey>, String, String)>> {
    let stale_claim = now - Duration::minutes(CLAIM_HOLDS_MINUTES);
    let candidates: Vec<i64> = client_alerts::table
        .inner_join(user_keys::table)
        .filter(user_keys::revoked_at.is_null())
        .filter(client_alerts::mailed_at.is_null())
        .filter(client_alerts::dismissed_at.is_null())
        .filter(client_alerts::mail_claimed_at.is_null().or(client_alerts::mail_claimed_at.lt(stale_claim)))
        .order(client_alerts::id)
        .select(client_alerts::key_id)
        .limit(keys * 20)
        .load(conn)?;
    let mut key_ids = candidates;
    key_ids.sort_unstable();
    key_ids.dedup();
    let mut claimed = Vec::new();
    for key_id in key_ids {
        if claimed.len() as i64 >= keys {
            break;
        }
        let last_mail: Option<NaiveDateTime> = client_alerts::table
            .filter(client_alerts::key_id.eq(key_id))
            .select(diesel::dsl::max(client_alerts::mailed_at))
            .first(conn)?;
        if last_mail.is_some_and(|at| now - at < every) {
            continue;
        }
        // Another instance taking the same key waits for this row lock, then finds them claimed.
        let ids: Vec<i64> = diesel::update(
            client_alerts::table
                .filter(client_alerts::key_id.eq(key_id))
                .filter(client_alerts::mailed_at.is_null())
                .filter(client_alerts::dismissed_at.is_null())
                .filter(client_alerts::mail_claimed_at.is_null().or(client_alerts::mail_claimed_at.lt(stale_claim))),
        )
        .set(client_alerts::mail_claimed_at.eq(now))
        .returning(client_alerts::id)
        .get_results(conn)?;
        if ids.is_empty() {
            continue;
        }
        let rows: Vec<(ClientAlertRow, String, String, String, String)> = client_alerts::table
            .inner_join(user_keys::table.inner_join(users::table))
            .filter(client_alerts::id.eq_any(&ids))
            .order(client_alerts::first_seen)
            .select((ClientAlertRow::as_select(), user_keys::name, user_keys::key_type, users::fullname, users::email))
            .load(conn)?;
        let Some((_, _, _, fullname, email)) = rows.first().cloned() else { continue };
        let alerts = rows
            .into_iter()
            .map(|(alert, key_name, key_type, _, _)| AlertOnKey { alert, key_name, key_type })
            .collect();
        claimed.push((alerts, fullname, email));
    }
    Ok(claimed)
}

/// The claimed alerts were mailed.
pub fn mark_mailed(conn: &mut DbConn, ids: &[i64], now: NaiveDateTime) -> DbResult<()> {
    diesel::update(client_alerts::table.filter(client_alerts::id.eq_any(ids)))
        .set((client_alerts::mailed_at.eq(now), client_alerts::mail_claimed_at.eq(None::<NaiveDateTime>)))
        .execute(conn)?;
    Ok(())
}

/// The claimed alerts could not be mailed: free for the next try.
pub fn release(conn: &mut DbConn, ids: &[i64]) -> DbResult<()> {
    diesel::update(
        client_alerts::table.filter(client_alerts::id.eq_any(ids)).filter(client_alerts::mailed_at.is_null()),
    )
    .set(client_alerts::mail_claimed_at.eq(None::<NaiveDateTime>))
    .execute(conn)?;
    Ok(())
}

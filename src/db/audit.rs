use super::models::NewAuditEntry;
use super::schema::audit_log;
use super::{DbConn, DbResult};
use diesel::prelude::*;

/// The only write the application makes to the audit trail: it appends.
pub fn append(conn: &mut DbConn, entry: &NewAuditEntry) -> DbResult<()> {
    let clean = |t: &Option<String>| t.as_deref().map(|t| super::storable(t).into_owned());
    let entry = NewAuditEntry {
        action: super::storable(&entry.action).into_owned(),
        key_type: clean(&entry.key_type),
        ip: clean(&entry.ip),
        reason: clean(&entry.reason),
        ..entry.clone()
    };
    diesel::insert_into(audit_log::table).values(&entry).execute(conn)?;
    Ok(())
}

use super::models::AuditEntry;
use super::schema::users;
use chrono::NaiveDateTime;

#[derive(Clone, Debug, Default)]
pub struct AuditFilter {
    pub action: Option<String>,
    /// Part of the actor's or the target's username.
    pub user: Option<String>,
    pub key_id: Option<i64>,
    pub since: Option<NaiveDateTime>,
    pub until: Option<NaiveDateTime>,
}

/// Newest first, one page (asks for `limit + 1` rows so the caller knows if there is more).
pub fn list(conn: &mut DbConn, filter: &AuditFilter, offset: i64, limit: i64) -> DbResult<Vec<AuditEntry>> {
    let mut q = audit_log::table.into_boxed();
    if let Some(a) = &filter.action {
        q = q.filter(audit_log::action.eq(super::storable(a).into_owned()));
    }
    if let Some(name) = filter.user.as_deref().map(str::trim).filter(|n| !n.is_empty()) {
        let ids: Vec<i64> = users::table
            .filter(
                users::username.like(format!("%{}%", super::storable(&name.to_lowercase()).replace(['%', '_'], ""))),
            )
            .select(users::id)
            .limit(1000)
            .load(conn)?;
        q = q.filter(audit_log::actor_id.eq_any(ids.clone()).or(audit_log::target_user_id.eq_any(ids)));
    }
    if let Some(k) = filter.key_id {
        q = q.filter(audit_log::key_id.eq(k));
    }
    if let Some(s) = filter.since {
        q = q.filter(audit_log::at.ge(s));
    }
    if let Some(u) = filter.until {
        q = q.filter(audit_log::at.lt(u));
    }
    Ok(q.order((audit_log::at.desc(), audit_log::id.desc()))
        .offset(offset.max(0))
        .limit(limit.clamp(1, 1000))
        .select(AuditEntry::as_select())
        .load(conn)?)
}

/// The names of keys, by id (keys are never deleted, so revoked ones keep theirs).
pub fn key_names(conn: &mut DbConn, ids: &[i64]) -> DbResult<std::collections::HashMap<i64, String>> {
    use super::schema::user_keys;
    let mut names = std::collections::HashMap::new();
    for chunk in ids.chunks(500) {
        let found: Vec<(i64, String)> =
            user_keys::table.filter(user_keys::id.eq_any(chunk)).select((user_keys::id, user_keys::name)).load(conn)?;
        names.extend(found);
    }
    Ok(names)
}

/// Failed sign-ins of one user, or from one address, since a time: for throttling bursts.
pub fn failures_since(conn: &mut DbConn, user_id: Option<i64>, ip: &str, since: NaiveDateTime) -> DbResult<(i64, i64)> {
    let failed = ["sign_in_failed", "token_login_failed"];
    let by_user = match user_id {
        Some(id) => audit_log::table
            .filter(audit_log::action.eq_any(failed))
            .filter(audit_log::target_user_id.eq(id))
            .filter(audit_log::at.ge(since))
            .count()
            .get_result(conn)?,
        None => 0,
    };
    let by_ip = audit_log::table
        .filter(audit_log::action.eq_any(failed))
        .filter(audit_log::ip.eq(ip))
        .filter(audit_log::at.ge(since))
        .count()
        .get_result(conn)?;
    Ok((by_user, by_ip))
}

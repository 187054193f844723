//! Issuing and revoking keys of any type, each with its audit entry in the same transaction.

use super::KeyTypeRegistry;
use crate::db::keys::Selection;
use crate::db::models::{NewAuditEntry, NewKey};
use crate::db::{audit, keys, DbConn, DbResult, Write};
use crate::domain::ip_restriction::IpRestriction;
use crate::domain::secret::ClearSecret;
use chrono::NaiveDateTime;

/// Who does something, and from where: recorded in the audit trail.
#[derive(Clone, Debug, Default)]
pub struct Actor {
    pub user_id: Option<i64>,
    pub ip: Option<String>,
}

#[derive(Clone, Debug, Default)]
pub struct KeyRequest {
    pub user_id: i64,
    pub key_type: String,
    pub name: String,
    pub service_id: Option<i64>,
    pub device_id: Option<String>,
    pub details: Option<String>,
    pub ip_restriction: Option<IpRestriction>,
    pub valid_until: Option<NaiveDateTime>,
    pub secret: SecretKind,
    pub with_private_token: bool,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SecretKind {
    /// No secret: the key is a registration (a push device).
    #[default]
    None,
    /// 32 hex characters, Moodle's token shape.
    Token,
    /// 64 hex characters.
    Long,
}

/// A key just issued: the clear secrets exist only here, to be shown once.
#[derive(Debug)]
pub struct IssuedKey {
    pub id: i64,
    pub secret: Option<ClearSecret>,
    pub private_token: Option<ClearSecret>,
}

pub fn issue(conn: &mut DbConn, request: KeyRequest, actor: &Actor, now: NaiveDateTime) -> DbResult<IssuedKey> {
    let secret = match request.secret {
        SecretKind::None => None,
        SecretKind::Token => Some(ClearSecret::token()),
        SecretKind::Long => Some(ClearSecret::long()),
    };
    let private_token = request.with_private_token.then(ClearSecret::private_token);
    let row = NewKey {
        user_id: request.user_id,
        key_type: request.key_type.clone(),
        name: request.name,
        secret_hash: secret.as_ref().map(|s| s.hash().as_str().to_owned()),
        private_hash: private_token.as_ref().map(|s| s.hash().as_str().to_owned()),
        service_id: request.service_id,
        device_id: request.device_id,
        details: request.details,
        created_at: now,
        created_by: actor.user_id,
        ip_restriction: request.ip_restriction.map(|r| r.to_stored()),
        valid_until: request.valid_until,
    };
    let id = keys::insert(conn, &row)?;
    audit::append(
        conn,
        &NewAuditEntry {
            at: now,
            action: "key_issued".into(),
            actor_id: actor.user_id,
            target_user_id: Some(request.user_id),
            key_id: Some(id),
            key_type: Some(request.key_type),
            ip: actor.ip.clone(),
            reason: None,
        },
    )?;
    Ok(IssuedKey { id, secret, private_token })
}

/// Whether keys of types that declare themselves not revocable are left alone (a user's own
/// request) or revoked too (ending a user's access entirely).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    RevocableOnly,
    Everything,
}

/// Revokes the selected keys of one user and audits each. Returns how many were revoked.
#[allow(clippy::too_many_arguments)]
pub fn revoke(
    conn: &mut Write,
    registry: &KeyTypeRegistry,
    user_id: i64,
    selection: &Selection,
    scope: Scope,
    actor: &Actor,
    reason: &str,
    now: NaiveDateTime,
) -> DbResult<usize> {
    let protected: Vec<String> = match scope {
        Scope::Everything => Vec::new(),
        Scope::RevocableOnly => registry.all().filter(|t| !t.revocable).map(|t| t.id.clone()).collect(),
    };
    let revoked = keys::revoke(conn, user_id, selection, &protected, actor.user_id, reason, now)?;
    for (key_id, key_type) in &revoked {
        audit::append(
            conn,
            &NewAuditEntry {
                at: now,
                action: "key_revoked".into(),
                actor_id: actor.user_id,
                target_user_id: Some(user_id),
                key_id: Some(*key_id),
                key_type: Some(key_type.clone()),
                ip: actor.ip.clone(),
                reason: Some(reason.to_owned()),
            },
        )?;
    }
    Ok(revoked.len())
}

/// Ends every way into one account at once: every session, token, push registration and
/// private key is revoked (hidden and non-revocable types too), optionally the account is
/// suspended, and the whole action is audited with its reason.
pub fn force_logout(
    conn: &mut Write,
    registry: &KeyTypeRegistry,
    user_id: i64,
    suspend: bool,
    actor: &Actor,
    reason: &str,
    now: NaiveDateTime,
) -> DbResult<usize> {
    let revoked = revoke(conn, registry, user_id, &Selection::AllExcept(None), Scope::Everything, actor, reason, now)?;
    if suspend {
        crate::db::users::set_suspended(conn, user_id, true)?;
    }
    audit::append(
        conn,
        &NewAuditEntry {
            at: now,
            action: if suspend { "force_logout_and_suspend".into() } else { "force_logout".into() },
            actor_id: actor.user_id,
            target_user_id: Some(user_id),
            ip: actor.ip.clone(),
            reason: Some(format!("{reason} ({revoked} keys revoked)")),
            ..Default::default()
        },
    )?;
    Ok(revoked)
}

//! Issuing and revoking keys of any type, each with its audit entry in the same transaction.

use super::{KeyTypeRegistry, SecretKind};
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
    /// The functions a token may call, when narrower than its service (personal access tokens).
    pub function_scope: Option<Vec<String>>,
    /// Said in the `key_issued` audit entry (a personal access token's scope, for admins).
    pub audit_note: Option<String>,
}

/// A key just issued: the clear secrets exist only here, to be shown once.
#[derive(Debug)]
pub struct IssuedKey {
    pub id: i64,
    pub secret: Option<ClearSecret>,
    pub private_token: Option<ClearSecret>,
}

/// Issues a key with the secrets its type's policy says it has, and audits it.
pub fn issue(
    conn: &mut DbConn,
    registry: &KeyTypeRegistry,
    request: KeyRequest,
    actor: &Actor,
    now: NaiveDateTime,
) -> DbResult<IssuedKey> {
    let policy = registry.policy(&request.key_type);
    let secret = match policy.secret {
        SecretKind::None => None,
        SecretKind::Token => Some(ClearSecret::token()),
        SecretKind::Long => Some(ClearSecret::long()),
    };
    let private_token = policy.private_secret.then(ClearSecret::private_token);
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
        function_scope: request.function_scope.map(|f| f.join(" ")),
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
            reason: request.audit_note,
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

/// A revocation asked for: whose keys, which, how far it reaches, by whom and why.
#[derive(Clone, Debug)]
pub struct Revocation {
    pub user_id: i64,
    pub selection: Selection,
    pub scope: Scope,
    pub actor: Actor,
    pub reason: String,
}

/// Revokes the selected keys of one user and audits each. Returns how many were revoked.
pub fn revoke(
    conn: &mut Write,
    registry: &KeyTypeRegistry,
    request: &Revocation,
    now: NaiveDateTime,
) -> DbResult<usize> {
    let Revocation { user_id, selection, scope, actor, reason } = request;
    let protected: Vec<String> = match scope {
        Scope::Everything => Vec::new(),
        Scope::RevocableOnly => registry.all().filter(|t| !t.revocable).map(|t| t.id.clone()).collect(),
    };
    let revoked = keys::revoke(conn, *user_id, selection, &protected, actor.user_id, reason, now)?;
    for (key_id, key_type) in &revoked {
        audit::append(
            conn,
            &NewAuditEntry {
                at: now,
                action: "key_revoked".into(),
                actor_id: actor.user_id,
                target_user_id: Some(*user_id),
                key_id: Some(*key_id),
                key_type: Some(key_type.clone()),
                ip: actor.ip.clone(),
                reason: Some(reason.clone()),
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
    let everything = Revocation {
        user_id,
        selection: Selection::AllExcept(None),
        scope: Scope::Everything,
        actor: actor.clone(),
        reason: reason.to_owned(),
    };
    let revoked = revoke(conn, registry, &everything, now)?;
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

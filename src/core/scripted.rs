//! What an administrator's script does with a web-service token (as D2L's `forceLogout`):
//! end a person's access, list their keys, revoke keys by id. The token's owner must hold the
//! matching capability, the rules that keep administrators from acting above their station
//! apply as on the pages, and every change is audited naming the owner and the token.

use super::listings::PersonKeys;
use super::{Client, Core, CoreError, CoreResult};
use crate::domain::capability::Capability;

/// The built-in service whose functions these are (`tool_userkeys_*`).
pub const ADMIN_SERVICE: &str = "tool_userkeys_admin";

/// The most keys one call revokes.
pub const MAX_KEYS_PER_CALL: usize = 1000;

/// A web-service token acting for its owner.
#[derive(Clone, Copy, Debug)]
pub struct TokenActor {
    pub user_id: i64,
    pub key_id: i64,
}

impl TokenActor {
    /// The reason as the audit trail records it: the caller's words and the token that acted.
    fn reason(self, reason: &str, default: &str) -> String {
        let reason: String = reason.trim().chars().filter(|c| !c.is_control()).take(500).collect();
        let reason = if reason.is_empty() { default.to_owned() } else { reason };
        format!("{reason} (by web-service token #{})", self.key_id)
    }
}

/// "Not found" said of a user id a script gave.
fn no_such_user(e: CoreError, user_id: i64) -> CoreError {
    match e {
        CoreError::NotFound => CoreError::Invalid(format!("userid => There is no user with id {user_id}.")),
        other => other,
    }
}

impl Core {
    async fn require(&self, user_id: i64, capability: Capability) -> CoreResult<()> {
        if self.capabilities_of(user_id).await?.contains(&capability) {
            Ok(())
        } else {
            Err(CoreError::MissingCapability(capability))
        }
    }

    /// Ends every session, token and push registration of a person, optionally suspending them.
    pub async fn force_logout_by_token(
        &self,
        by: TokenActor,
        user_id: i64,
        suspend: bool,
        reason: &str,
        client: &Client,
    ) -> CoreResult<usize> {
        self.require(by.user_id, Capability::EndSessions).await?;
        self.user(user_id).await.map_err(|e| no_such_user(e, user_id))?;
        let reason = by.reason(reason, "force logout by a script");
        self.force_logout(by.user_id, user_id, suspend, reason, client).await
    }

    /// Every key a person has had, for a script.
    pub async fn user_keys_by_token(&self, by: TokenActor, user_id: i64) -> CoreResult<PersonKeys> {
        self.require(by.user_id, Capability::ViewAllKeys).await?;
        self.person_keys(user_id).await.map_err(|e| no_such_user(e, user_id))
    }

    /// Revokes keys by id; every id must name a key. How many were revoked (keys already
    /// revoked or expired count for nothing).
    pub async fn revoke_keys_by_token(
        &self,
        by: TokenActor,
        ids: Vec<i64>,
        reason: &str,
        client: &Client,
    ) -> CoreResult<usize> {
        self.require(by.user_id, Capability::RevokeAnyKey).await?;
        if ids.is_empty() {
            return Err(CoreError::Invalid("keyids => Give at least one key id.".into()));
        }
        if ids.len() > MAX_KEYS_PER_CALL {
            return Err(CoreError::Invalid(format!("keyids => At most {MAX_KEYS_PER_CALL} keys in one call.")));
        }
        let lookup = ids.clone();
        let missing = self
            .db
            .read(move |conn| {
                for id in lookup {
                    if crate::db::keys::find(conn, id)?.is_none() {
                        return Ok(Some(id));
                    }
                }
                Ok(None)
            })
            .await?;
        if let Some(id) = missing {
            return Err(CoreError::Invalid(format!("keyids => There is no key with id {id}.")));
        }
        let reason = by.reason(reason, "revoked by a script");
        self.revoke_keys(by.user_id, ids, reason, client).await
    }
}

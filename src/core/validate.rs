//! The one validity check for every key that carries a secret — web-service tokens, private
//! keys (feeds, auto-login, QR login) and web sessions — driven by the key type's policy.
//!
//! A key is valid only if, positively: it exists, is of the type asked for, is not revoked, is
//! its expected owner's, has not expired, the caller's address is inside its restriction, its
//! type is switched on and its owner is not suspended. A single-use key is then revoked as it
//! is accepted. What does not change from one request to the next (the row, its owner, its
//! service) may come from the cache; what does (the moment, the address) is checked every time.

use super::error::{CoreError, Refusal};
use super::valid_key::{load_service, KeyOwner, ValidKey};
use super::{Client, Core, CoreResult};
use crate::db::{DbConn, DbResult};
use crate::domain::secret::SecretHash;
use crate::domain::time::now;
use crate::keys::ops::{self, Revocation, Scope};
use crate::keys::KeyTypeRegistry;
use std::sync::Arc;

/// What is asked of a presented secret.
#[derive(Clone, Copy, Debug)]
pub struct Expected<'a> {
    pub key_type: &'a str,
    /// The owner the request names (a feed's or auto-login's `userid`), if any.
    pub owner: Option<i64>,
}

impl Core {
    /// Validates a presented secret as a key of `expected.key_type`, records its use (unless
    /// its type counts uses per call) and, for single-use keys, consumes it.
    pub async fn validate(
        &self,
        presented: &str,
        expected: Expected<'_>,
        client: &Client,
    ) -> CoreResult<Arc<ValidKey>> {
        self.check_key(presented, expected, client, true).await
    }

    /// Whether a presented secret is valid, without using it: a single-use key stays unused
    /// and no use is recorded (a page that asks before it acts).
    pub async fn peek(&self, presented: &str, expected: Expected<'_>, client: &Client) -> CoreResult<Arc<ValidKey>> {
        self.check_key(presented, expected, client, false).await
    }

    async fn check_key(
        &self,
        presented: &str,
        expected: Expected<'_>,
        client: &Client,
        using: bool,
    ) -> CoreResult<Arc<ValidKey>> {
        let refused = |r| CoreError::Refused(r);
        let policy = self.registry.policy(expected.key_type);
        let presented = presented.trim();
        // Every secret issued here is 32 or 64 characters; anything far off cannot be one.
        if presented.is_empty() || presented.len() > 128 {
            return Err(refused(Refusal::Unknown));
        }
        let digest = SecretHash::digest(presented);
        let cache = self.cache.as_ref().filter(|_| policy.cached);
        let key = match cache.and_then(|c| c.get(&digest)) {
            Some(key) => key,
            None => {
                let read_at = self.db.generation();
                let hash = SecretHash::from_digest(&digest).as_str().to_owned();
                let (registry, shared) = (self.registry.clone(), cache.cloned());
                let loaded = self
                    .db
                    .read_quick(move |conn| load(conn, &registry, shared.as_deref(), &hash))
                    .await?
                    .ok_or_else(|| refused(Refusal::Unknown))?;
                match cache {
                    Some(cache) if loaded.key_type.as_ref() == expected.key_type => {
                        cache.insert(digest, loaded, read_at, &self.db)
                    }
                    _ => Arc::new(loaded),
                }
            }
        };
        if key.key_type.as_ref() != expected.key_type || expected.owner.is_some_and(|o| o != key.user.id) {
            return Err(refused(Refusal::Unknown));
        }
        match key.check(client.ip, now()) {
            Ok(()) => {}
            Err(Refusal::Expired) if policy.expiry_told_once => {
                return Err(refused(self.tell_expiry(key.key_id).await?))
            }
            Err(refusal) => return Err(refused(refusal)),
        }
        if !using {
            return Ok(key);
        }
        if policy.single_use && !self.consume(&key, client).await? {
            // Two requests racing with one single-use key: only the one that revoked it wins.
            return Err(refused(Refusal::Unknown));
        }
        if !policy.use_counted_per_call {
            self.record_use(key.key_id, client);
        }
        Ok(key)
    }

    /// Tells an expired key's client "expired" the first time, "unknown" after (the row is
    /// kept, marked told, so the pages still show the key as expired).
    async fn tell_expiry(&self, key_id: i64) -> CoreResult<Refusal> {
        let first = self.db.write(move |write| crate::db::keys::report_expiry(write, key_id, now())).await?;
        Ok(if first { Refusal::Expired } else { Refusal::Unknown })
    }

    async fn consume(&self, key: &ValidKey, client: &Client) -> CoreResult<bool> {
        let request = Revocation {
            user_id: key.user.id,
            selection: crate::db::keys::Selection::One(key.key_id),
            scope: Scope::Everything,
            actor: client.actor(Some(key.user.id)),
            reason: "used".into(),
        };
        let registry = self.registry.clone();
        Ok(self.db.write(move |write| ops::revoke(write, &registry, &request, now())).await? > 0)
    }
}

/// One statement for the key, its owner and its type's switch, and (unless cached) its service.
fn load(
    conn: &mut DbConn,
    registry: &KeyTypeRegistry,
    cache: Option<&super::token_cache::TokenCache>,
    hash: &str,
) -> DbResult<Option<ValidKey>> {
    let Some((row, user, type_switch)) = crate::db::keys::find_by_secret_hash(conn, hash)? else { return Ok(None) };
    let service = match row.service_id {
        None => None,
        Some(id) => match cache.and_then(|c| c.service(id)) {
            Some(s) => Some(s),
            None => load_service(conn, id)?.map(Arc::new),
        },
    };
    let type_enabled = type_switch.unwrap_or_else(|| registry.on_by_default(&row.key_type));
    Ok(ValidKey::from_rows(row, Arc::new(KeyOwner::of(&user)), service, type_enabled, registry))
}

//! The one validity check for every key that carries a secret — web-service tokens, private
//! keys (feeds, auto-login, QR login) and web sessions — driven by the key type's policy.
//!
//! A key is valid only if, positively: it exists, is of the type asked for, is not revoked, is
//! its expected owner's, has not expired, the caller's address is inside its restriction, its
//! type is switched on and its owner is not suspended. A single-use key is then revoked as it
//! is accepted. What does not change from one request to the next (the row, its owner, its
//! service) may come from the cache; what does (the moment, the address) is checked every time.

use super::error::{CoreError, Refusal};
use super::{Client, Core, CoreResult};
use crate::db::models::{KeyRow, Service, User};
use crate::db::{DbConn, DbResult};
use crate::domain::ip_restriction::IpRestriction;
use crate::domain::secret::SecretHash;
use crate::domain::time::now;
use crate::keys::ops::{self, Revocation, Scope};
use crate::keys::KeyTypeRegistry;
use chrono::NaiveDateTime;
use std::net::IpAddr;
use std::sync::Arc;

/// A key's owner, as much as a request needs.
#[derive(Debug)]
pub struct KeyOwner {
    pub id: i64,
    pub username: String,
    pub fullname: String,
    pub is_site_admin: bool,
    pub suspended: bool,
    /// This user's fields of Moodle's site-info answer, serialised at first use.
    pub site_info: std::sync::OnceLock<Box<str>>,
}

impl KeyOwner {
    pub fn of(user: &User) -> Self {
        KeyOwner {
            id: user.id,
            username: user.username.clone(),
            fullname: user.fullname.clone(),
            is_site_admin: user.is_site_admin,
            suspended: user.suspended,
            site_info: Default::default(),
        }
    }
}

/// A service as its tokens see it: the row and its functions.
#[derive(Debug)]
pub struct ServiceAccess {
    pub service: Service,
    pub functions: Vec<String>,
    /// This service's fields of Moodle's site-info answer, serialised at first use.
    pub site_info: std::sync::OnceLock<Box<str>>,
}

impl ServiceAccess {
    /// Whether a call of this function is allowed: the service is on and offers it.
    pub fn allows(&self, function: &str) -> bool {
        self.service.enabled && self.functions.iter().any(|f| f == function)
    }
}

/// A key that passed the checks that depend only on stored state; the checks of the moment
/// and the caller are made on each use. Small, as the cache holds many: owners and services
/// are shared between keys.
#[derive(Debug)]
pub struct ValidKey {
    pub key_id: i64,
    pub key_type: Box<str>,
    pub valid_until: Option<NaiveDateTime>,
    pub ip_restriction: Option<IpRestriction>,
    pub private_hash: Option<Box<str>>,
    pub type_enabled: bool,
    pub user: Arc<KeyOwner>,
    pub service: Option<Arc<ServiceAccess>>,
}

impl ValidKey {
    /// The key in `row`, unless stored state alone already refuses it.
    pub(super) fn from_rows(
        row: KeyRow,
        user: Arc<KeyOwner>,
        service: Option<Arc<ServiceAccess>>,
        type_enabled: bool,
        registry: &KeyTypeRegistry,
    ) -> Option<Self> {
        let policy = registry.policy(&row.key_type);
        // An expired key whose client has been told so is gone, as Moodle deletes it.
        if row.revoked_at.is_some() || row.expiry_reported_at.is_some() {
            return None;
        }
        if policy.needs_service
            && (row.service_id.is_none() || service.as_ref().map(|s| s.service.id) != row.service_id)
        {
            return None;
        }
        let ip_restriction = match row.ip_restriction.as_deref().map(IpRestriction::parse) {
            None | Some(Ok(None)) => None,
            Some(Ok(Some(r))) => Some(r),
            // An unreadable restriction refuses everything rather than allowing everything.
            Some(Err(_)) => IpRestriction::parse("0.0.0.0/32").ok().flatten(),
        };
        Some(ValidKey {
            key_id: row.id,
            key_type: row.key_type.into_boxed_str(),
            valid_until: row.valid_until,
            ip_restriction,
            private_hash: row.private_hash.map(String::into_boxed_str),
            type_enabled,
            user,
            service,
        })
    }

    /// The checks of the moment and the caller, made on every use. Expiry first: an expired
    /// key is expired wherever it is used from.
    fn check(&self, ip: IpAddr, now: NaiveDateTime) -> Result<(), Refusal> {
        if self.valid_until.is_some_and(|v| v <= now) {
            return Err(Refusal::Expired);
        }
        if self.ip_restriction.as_ref().is_some_and(|r| !r.allows(ip)) {
            return Err(Refusal::AddressNotAllowed(ip));
        }
        if !self.type_enabled {
            return Err(Refusal::TypeDisabled);
        }
        if self.user.suspended {
            return Err(Refusal::OwnerSuspended(self.user.username.clone()));
        }
        Ok(())
    }
}

/// A key's service with its functions, from the database.
pub(super) fn load_service(conn: &mut DbConn, service_id: i64) -> DbResult<Option<ServiceAccess>> {
    let Some(service) = crate::db::services::find(conn, service_id)? else { return Ok(None) };
    Ok(Some(ServiceAccess {
        functions: crate::db::services::functions(conn, service.id)?,
        service,
        site_info: Default::default(),
    }))
}

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
                    .read(move |conn| load(conn, &registry, shared.as_deref(), &hash))
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

/// One trip to the database for the key, its owner, its type's switch and (unless cached) its
/// service.
fn load(
    conn: &mut DbConn,
    registry: &KeyTypeRegistry,
    cache: Option<&super::token_cache::TokenCache>,
    hash: &str,
) -> DbResult<Option<ValidKey>> {
    let Some((row, user)) = crate::db::keys::find_by_secret_hash(conn, hash)? else { return Ok(None) };
    let service = match row.service_id {
        None => None,
        Some(id) => match cache.and_then(|c| c.service(id)) {
            Some(s) => Some(s),
            None => load_service(conn, id)?.map(Arc::new),
        },
    };
    let type_enabled = crate::db::key_types::enabled(conn, &row.key_type, registry.on_by_default(&row.key_type))?;
    Ok(ValidKey::from_rows(row, Arc::new(KeyOwner::of(&user)), service, type_enabled, registry))
}

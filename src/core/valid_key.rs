//! A key that passed the checks of stored state, as validation hands it to a transport and as
//! the cache keeps it.

use super::error::Refusal;
use crate::db::models::{KeyCheckRow, Service, User};
use crate::db::{DbConn, DbResult};
use crate::domain::ip_restriction::IpRestriction;
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
    /// The token cache's marks on a cached owner (see `token_cache`).
    pub cache_mark: super::token_cache::OwnerMark,
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
            cache_mark: Default::default(),
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
    /// Narrowed to one token's own scope (a personal access token): not shared between tokens.
    pub narrowed: bool,
}

impl ServiceAccess {
    /// The service as a token with its own scope sees it: only the functions both offer, in
    /// the service's order. The service's switch still applies.
    pub fn narrowed_to(&self, scope: &str) -> Self {
        let scope: Vec<&str> = scope.split_whitespace().collect();
        ServiceAccess {
            service: self.service.clone(),
            functions: self.functions.iter().filter(|f| scope.contains(&f.as_str())).cloned().collect(),
            site_info: Default::default(),
            narrowed: true,
        }
    }

    /// A copy of its own, its site-info fields serialised again at first use.
    pub fn copy(&self) -> Self {
        ServiceAccess {
            service: self.service.clone(),
            functions: self.functions.clone(),
            site_info: Default::default(),
            narrowed: self.narrowed,
        }
    }

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
        row: KeyCheckRow,
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
        // A personal access token opens only its own functions of its service.
        let service = match (service, row.function_scope.as_deref()) {
            (Some(s), Some(scope)) => Some(Arc::new(s.narrowed_to(scope))),
            (service, _) => service,
        };
        // An unreadable restriction refuses everything rather than allowing anything.
        let ip_restriction = IpRestriction::from_stored(row.ip_restriction.as_deref());
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
    pub(super) fn check(&self, ip: IpAddr, now: NaiveDateTime) -> Result<(), Refusal> {
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
        narrowed: false,
    }))
}

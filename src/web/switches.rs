//! The site's switches as the pages show them: which services and key types are off.

use crate::db::models::KeyRow;
use crate::db::{DbConn, DbResult};
use crate::keys::KeyTypeRegistry;
use std::collections::HashMap;

pub struct SiteSwitches {
    /// Service id → (name, enabled).
    pub services: HashMap<i64, (String, bool)>,
    types: HashMap<String, bool>,
}

impl SiteSwitches {
    pub fn read(conn: &mut DbConn) -> DbResult<Self> {
        Ok(SiteSwitches {
            services: crate::db::services::all(conn)?.into_iter().map(|s| (s.id, (s.name, s.enabled))).collect(),
            types: crate::db::key_types::all(conn)?.into_iter().collect(),
        })
    }

    pub fn type_enabled(&self, registry: &KeyTypeRegistry, key_type: &str) -> bool {
        self.types.get(key_type).copied().unwrap_or_else(|| registry.on_by_default(key_type))
    }

    pub fn service_name(&self, key: &KeyRow) -> Option<&str> {
        key.service_id.and_then(|s| self.services.get(&s)).map(|(name, _)| name.as_str())
    }

    pub fn service_off(&self, key: &KeyRow) -> bool {
        key.service_id.and_then(|s| self.services.get(&s)).is_some_and(|(_, on)| !on)
    }

    /// Whether the site has switched off the key's type or its service.
    pub fn key_disabled(&self, registry: &KeyTypeRegistry, key: &KeyRow) -> bool {
        !self.type_enabled(registry, &key.key_type) || self.service_off(key)
    }
}

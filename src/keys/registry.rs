use super::policy::{KeyPolicy, SelfService};
use std::sync::Arc;

/// A kind of key: how it is shown, and (its policy) how it is issued and validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyType {
    /// Stable id stored with each key (`web_session`, `webservice_token`, `rss`, …).
    pub id: String,
    pub label: String,
    pub description: String,
    /// Hidden types are not listed to their owner but are revoked by "revoke everything".
    pub visible: bool,
    pub revocable: bool,
    /// A link to the component's own settings page for this kind of key.
    pub settings_url: Option<String>,
    /// Whether the type is on when the site has not said otherwise.
    pub enabled_by_default: bool,
    pub policy: KeyPolicy,
    /// Whether, and how, a person creates a key of this type on their own page.
    pub self_service: Option<SelfService>,
}

impl KeyType {
    pub fn new(id: &str, label: &str, description: &str) -> Self {
        KeyType {
            id: id.to_owned(),
            label: label.to_owned(),
            description: description.to_owned(),
            visible: true,
            revocable: true,
            settings_url: None,
            enabled_by_default: true,
            policy: KeyPolicy::default(),
            self_service: None,
        }
    }

    pub fn with_policy(mut self, policy: KeyPolicy) -> Self {
        self.policy = policy;
        self
    }

    pub fn created_by_owner(mut self, self_service: SelfService) -> Self {
        self.self_service = Some(self_service);
        self
    }

    pub fn hidden(mut self) -> Self {
        self.visible = false;
        self
    }

    pub fn not_revocable(mut self) -> Self {
        self.revocable = false;
        self
    }

    pub fn with_settings_url(mut self, url: &str) -> Self {
        self.settings_url = Some(url.to_owned());
        self
    }

    pub fn disabled_by_default(mut self) -> Self {
        self.enabled_by_default = false;
        self
    }
}

/// The registered key types, in registration order (the order the pages list them in).
#[derive(Clone, Debug, Default)]
pub struct KeyTypeRegistry {
    types: Vec<Arc<KeyType>>,
}

#[derive(Debug, thiserror::Error)]
#[error("key type “{0}” is already registered")]
pub struct AlreadyRegistered(pub String);

impl KeyTypeRegistry {
    pub fn empty() -> Self {
        Self::default()
    }

    /// The registry with every core type.
    pub fn with_core_types() -> Self {
        let mut registry = Self::empty();
        for key_type in super::types::core_types() {
            registry.register(key_type).expect("core key type ids are distinct");
        }
        registry
    }

    pub fn register(&mut self, key_type: KeyType) -> Result<(), AlreadyRegistered> {
        if self.get(&key_type.id).is_some() {
            return Err(AlreadyRegistered(key_type.id));
        }
        self.types.push(Arc::new(key_type));
        Ok(())
    }

    pub fn get(&self, id: &str) -> Option<&KeyType> {
        self.types.iter().find(|t| t.id == id).map(|t| t.as_ref())
    }

    pub fn all(&self) -> impl Iterator<Item = &KeyType> {
        self.types.iter().map(|t| t.as_ref())
    }

    /// Whether a type is on where the site has not switched it; unknown types count as on, so
    /// that a stored switch (or its absence) decides for them.
    pub fn on_by_default(&self, id: &str) -> bool {
        self.get(id).is_none_or(|t| t.enabled_by_default)
    }

    pub fn visible(&self) -> impl Iterator<Item = &KeyType> {
        self.all().filter(|t| t.visible)
    }

    /// The types whose keys are signed-in clients (see `KeyPolicy::signs_in`).
    pub fn sign_in_types(&self) -> Vec<String> {
        self.all().filter(|t| t.policy.signs_in).map(|t| t.id.clone()).collect()
    }

    /// The policy of a type; a type nobody registered gets the default (no secret, no cache).
    pub fn policy(&self, id: &str) -> KeyPolicy {
        self.get(id).map(|t| t.policy.clone()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registering_twice_is_refused() {
        let mut r = KeyTypeRegistry::with_core_types();
        assert!(r.register(KeyType::new(super::super::types::web_session::ID, "x", "y")).is_err());
        r.register(KeyType::new("plugin_key", "Plugin", "A plugin's key").hidden()).unwrap();
        assert!(!r.get("plugin_key").unwrap().visible);
        assert!(r.visible().all(|t| t.id != "plugin_key"));
    }
}

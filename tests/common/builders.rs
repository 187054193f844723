//! Builders for what a test needs to exist before the behaviour it tests, in the style of
//! crates.io's test kit: `app.key_for(alice).of_type("rss").named("Feeds").create()`.
//!
//! Keys are issued through the crate's own `keys::ops::issue`, so they are stored, hashed and
//! audited (`key_issued`) exactly as the application issues them.

use super::TestApp;
use chrono::Duration;
use userkeys::domain::ip_restriction::IpRestriction;
use userkeys::domain::time::now;
use userkeys::keys::device_tokens::Device;
use userkeys::keys::ops::{self, Actor, KeyRequest};
use userkeys::keys::WEBSERVICE_TOKEN;

/// The service a web-service token belongs to unless `service` names another.
pub const DEFAULT_SERVICE: &str = "moodle_mobile_app";

impl TestApp {
    /// A key for this user, to be described and then issued by `create`. Unless told otherwise:
    /// a web-service token of the mobile app's service, named "Test key", with neither expiry
    /// nor IP restriction, issued by its owner.
    pub fn key_for(&self, user_id: i64) -> KeyBuilder<'_> {
        KeyBuilder {
            app: self,
            user_id,
            key_type: WEBSERVICE_TOKEN.into(),
            name: "Test key".into(),
            service: None,
            device: None,
            valid_for: None,
            ip_restriction: None,
            issued_by: None,
        }
    }
}

#[must_use = "nothing is issued until `create`"]
pub struct KeyBuilder<'a> {
    app: &'a TestApp,
    user_id: i64,
    key_type: String,
    name: String,
    service: Option<String>,
    device: Option<String>,
    valid_for: Option<Duration>,
    ip_restriction: Option<IpRestriction>,
    issued_by: Option<i64>,
}

impl KeyBuilder<'_> {
    /// The key type's id (`rss`, `calendar_export`, a plugin's type…). Only a web-service token
    /// gets a service without being given one.
    pub fn of_type(mut self, key_type: &str) -> Self {
        self.key_type = key_type.into();
        self
    }

    pub fn named(mut self, name: &str) -> Self {
        self.name = name.into();
        self
    }

    /// Valid until `duration` after it is issued.
    pub fn expiring_in(mut self, duration: Duration) -> Self {
        self.valid_for = Some(duration);
        self
    }

    /// Expired a minute before it is issued.
    pub fn expired(self) -> Self {
        self.expiring_in(-Duration::minutes(1))
    }

    /// Usable only from these addresses and ranges, written as an admin writes them
    /// ("127.0.0.1, 10.0.0.0/8").
    pub fn ip_restricted(mut self, restriction: &str) -> Self {
        let parsed = IpRestriction::parse(restriction).unwrap_or_else(|e| panic!("IP restriction {restriction}: {e}"));
        self.ip_restriction = Some(parsed.unwrap_or_else(|| panic!("an empty IP restriction: {restriction:?}")));
        self
    }

    /// The web service the key belongs to, by its short name.
    pub fn service(mut self, shortname: &str) -> Self {
        self.service = Some(shortname.into());
        self
    }

    /// The device the key belongs to: the device a client signing in with `deviceid=id` is,
    /// so such a sign-in replaces this key.
    pub fn device(mut self, id: &str) -> Self {
        self.device = Some(Device { device_id: Some(id.into()), ..Default::default() }.identity());
        self
    }

    /// Issued by someone other than its owner (an admin), as the audit trail records it.
    pub fn issued_by(mut self, user_id: i64) -> Self {
        self.issued_by = Some(user_id);
        self
    }

    /// Issues the key; returns its id and its clear secret (for a web session, the cookie's value).
    pub fn create(self) -> (i64, String) {
        let service = self.service.or_else(|| (self.key_type == WEBSERVICE_TOKEN).then(|| DEFAULT_SERVICE.into()));
        let service_id = service.map(|shortname| {
            let found = self.app.with_db(|conn| userkeys::db::services::find_by_shortname(conn, &shortname));
            found.unwrap_or_else(|| panic!("no service {shortname}")).id
        });
        let now = now();
        let request = KeyRequest {
            user_id: self.user_id,
            key_type: self.key_type,
            name: self.name,
            service_id,
            device_id: self.device,
            ip_restriction: self.ip_restriction,
            valid_until: self.valid_for.map(|d| now + d),
            ..Default::default()
        };
        let actor = Actor { user_id: Some(self.issued_by.unwrap_or(self.user_id)), ip: None };
        let issued = self.app.with_db(|conn| ops::issue(conn, &self.app.registry, request, &actor, now));
        let secret = issued.secret.expect("a key issued with a secret");
        (issued.id, secret.expose().to_owned())
    }
}

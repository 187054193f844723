//! A key type's policy: what its secret looks like, how long a key lives, where it may be used
//! from, whether it is used once, kept in memory, or counted per call. Issuing and the one
//! validity check (`core::validate`) read it, so a type's behaviour lives with the type.

use chrono::{Duration, NaiveDateTime};

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

/// How long a new key is valid.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Lifetime {
    /// Until revoked (or an expiry the issuer sets).
    #[default]
    UntilRevoked,
    Fixed(Duration),
    /// The site's session timeout, slid forward as the session is used.
    SessionTimeout,
    /// The site's token lifetime in days.
    TokenLifetime,
}

/// The two site settings lifetimes may refer to.
#[derive(Clone, Copy, Debug)]
pub struct SiteLifetimes {
    pub session: Duration,
    pub token: Duration,
}

impl Lifetime {
    pub fn valid_until(self, now: NaiveDateTime, site: SiteLifetimes) -> Option<NaiveDateTime> {
        match self {
            Lifetime::UntilRevoked => None,
            Lifetime::Fixed(d) => Some(now + d),
            Lifetime::SessionTimeout => Some(now + site.session),
            Lifetime::TokenLifetime => Some(now + site.token),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyPolicy {
    pub secret: SecretKind,
    pub lifetime: Lifetime,
    /// Issued restricted to the address that asked for it.
    pub bound_to_address: bool,
    /// Revoked as it is accepted; of two requests racing with one key, one wins.
    pub single_use: bool,
    /// Validated keys are kept in memory (the hot path: web-service tokens).
    pub cached: bool,
    /// The key opens one service and is worthless without it.
    pub needs_service: bool,
    /// An expired key answers "expired" once, then "not found", as Moodle deletes an expired
    /// token on its first refused use.
    pub expiry_told_once: bool,
    /// Each call made with the key is one use (counted by the transport once the call is
    /// allowed), rather than each validation.
    pub use_counted_per_call: bool,
    /// Issued with a second, private secret (Moodle's private token).
    pub private_secret: bool,
    /// A signed-in client (a browser, an app on a device, the keys that sign the app in):
    /// ended by "sign out everywhere else" and by a new password. Feed keys are not.
    pub signs_in: bool,
    /// Whether the owner hears of a client, or a network, the key had not been used by before.
    pub new_clients: NewClients,
}

/// What a key's first use by a new client (or from a new network) tells its owner.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NewClients {
    /// A notice on their page and a mail: tokens, feed and calendar keys, plugins' keys.
    #[default]
    Alert,
    /// Nothing: the key is born with its client (a browser's session), is used once within
    /// minutes (auto-login, QR and reset keys), or is used by the site itself (push devices).
    Quiet,
}

/// A key a person creates for themselves on their page, shown once as an address to copy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SelfService {
    /// The new key's name in the list.
    pub key_name: &'static str,
    /// What the shown value is ("Feed address").
    pub shown_as: &'static str,
    /// The address holding the secret, from the site's root, the owner's id and the secret.
    pub address: AddressTemplate,
    /// Also shown as a QR code (for the phone to scan).
    pub qr_code: bool,
}

/// An address with `{root}`, `{userid}` and `{secret}` in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddressTemplate(pub &'static str);

impl AddressTemplate {
    pub fn fill(&self, root: &str, user_id: i64, secret: &str) -> String {
        self.0.replace("{root}", root).replace("{userid}", &user_id.to_string()).replace("{secret}", secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_filled_in() {
        let t = AddressTemplate("{root}/rss/file.php/1/{secret}/user/{userid}/rss.xml");
        assert_eq!(t.fill("https://m.example", 7, "abc"), "https://m.example/rss/file.php/1/abc/user/7/rss.xml");
    }
}

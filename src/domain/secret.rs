//! Secrets are shown once and stored only as a SHA-256 hash.

use rand::RngExt;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

const ALPHANUMERIC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// A secret in clear. `Debug` is redacted so it never reaches a log by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct ClearSecret(String);

impl std::fmt::Debug for ClearSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClearSecret(<redacted>)")
    }
}

impl ClearSecret {
    /// 128 random bits as 32 lowercase hex characters: the shape of a Moodle web-service token.
    pub fn token() -> Self {
        let bytes: [u8; 16] = rand::rng().random();
        ClearSecret(hex::encode(bytes))
    }

    /// 256 random bits as 64 lowercase hex characters: session ids and other long-lived keys.
    pub fn long() -> Self {
        let bytes: [u8; 32] = rand::rng().random();
        ClearSecret(hex::encode(bytes))
    }

    /// 64 characters from [A-Za-z0-9] (≈381 bits): the shape of Moodle's `privatetoken`.
    pub fn private_token() -> Self {
        let mut rng = rand::rng();
        let s = (0..64).map(|_| ALPHANUMERIC[rng.random_range(0..ALPHANUMERIC.len())] as char).collect();
        ClearSecret(s)
    }

    pub fn from_client(value: &str) -> Self {
        ClearSecret(value.to_owned())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn hash(&self) -> SecretHash {
        SecretHash::of(&self.0)
    }
}

/// SHA-256 of a secret, lowercase hex: what the database holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretHash(String);

impl SecretHash {
    pub fn of(secret: &str) -> Self {
        SecretHash(hex::encode(Sha256::digest(secret.as_bytes())))
    }

    /// The raw SHA-256, for lookups in memory that need no hex.
    pub fn digest(secret: &str) -> [u8; 32] {
        Sha256::digest(secret.as_bytes()).into()
    }

    pub fn from_digest(digest: &[u8; 32]) -> Self {
        SecretHash(hex::encode(digest))
    }

    pub fn from_stored(hex: String) -> Self {
        SecretHash(hex)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn matches(&self, secret: &str) -> bool {
        constant_time_eq(self.0.as_bytes(), Self::of(secret).0.as_bytes())
    }
}

pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// A value derived from a secret for another purpose (e.g. the CSRF `sesskey` from a session id),
/// so nothing extra is stored and any instance can recompute it.
pub fn derive(purpose: &str, secret: &ClearSecret, len: usize) -> String {
    let mut hasher = Sha256::new();
    hasher.update(purpose.as_bytes());
    hasher.update([0u8]);
    hasher.update(secret.0.as_bytes());
    // Into a buffer: hex::encode goes a char at a time, and this runs on every site-info call.
    let mut out = [0u8; 64];
    hex::encode_to_slice(hasher.finalize(), &mut out).expect("32 bytes are 64 hex digits");
    String::from_utf8_lossy(&out[..len.min(64)]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_shapes_match_moodle() {
        let t = ClearSecret::token();
        assert_eq!(t.expose().len(), 32);
        assert!(t.expose().chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        let p = ClearSecret::private_token();
        assert_eq!(p.expose().len(), 64);
        assert!(p.expose().chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(ClearSecret::token(), ClearSecret::token());
    }

    #[test]
    fn hash_matches_only_its_secret() {
        let t = ClearSecret::token();
        let h = t.hash();
        assert!(h.matches(t.expose()));
        assert!(!h.matches(ClearSecret::token().expose()));
        assert_eq!(h.as_str().len(), 64);
        assert!(!format!("{t:?}").contains(t.expose()));
    }
}

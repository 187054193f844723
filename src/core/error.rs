//! The core's one error type. Each transport maps it once: `web::error` to pages, `moodle::error`
//! to Moodle's error codes.

use crate::db::DbError;
use std::net::IpAddr;

#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// A key was presented and is not accepted.
    #[error("key refused: {0:?}")]
    Refused(Refusal),
    #[error("sign-in refused: {0:?}")]
    SignIn(SignInRefusal),
    /// No such thing, or not the asker's: which of the two is not told.
    #[error("not found")]
    NotFound,
    /// Input the asker must correct, in words for a person.
    #[error("{0}")]
    Invalid(String),
    /// Input the asker must correct, in words for a person, about one field of a form.
    #[error("{message}")]
    InvalidField { field: &'static str, message: String },
    /// The asker may not do this, in words for a person.
    #[error("{0}")]
    NotAllowed(String),
    /// The asker lacks this capability.
    #[error("missing capability {}", .0.name())]
    MissingCapability(crate::domain::capability::Capability),
    /// The service asked for does not exist or is switched off.
    #[error("service not available")]
    ServiceUnavailable,
    /// Tokens cannot be issued for this service (web-service tokens are switched off).
    #[error("cannot create a token for {0}")]
    TokensDisabled(String),
    /// Auto-login needs the site served over HTTPS.
    #[error("HTTPS required")]
    HttpsRequired,
    #[error("not allowed to site admins")]
    NotForSiteAdmins,
    /// Asked again too soon (minutes to wait between requests).
    #[error("wait {0} minutes between requests")]
    TooSoon(i64),
    #[error("the private token does not match")]
    PrivateTokenMismatch,
    #[error(transparent)]
    Db(#[from] DbError),
}

/// Why a presented key is not accepted. The transports word each as their clients expect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Unknown, revoked, of another type or another user.
    Unknown,
    Expired,
    AddressNotAllowed(IpAddr),
    TypeDisabled,
    OwnerSuspended(String),
}

/// Why a sign-in failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignInRefusal {
    /// Too many failures lately; the password was not checked. Try again after `seconds`.
    Throttled { seconds: i64 },
    /// Wrong password or unknown username (not told apart).
    Invalid,
    /// The right password for a suspended account.
    Suspended,
}

//! Moodle's errors: one type, rendered as the REST server's exception (JSON or XML) or as
//! login/token.php's error object. Both answer HTTP 200, as Moodle does; clients read `errorcode`.

use crate::core::DbError;
use crate::core::{CoreError, Refusal};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoodleError {
    /// The PHP exception class Moodle names.
    pub exception: &'static str,
    pub errorcode: &'static str,
    pub message: String,
    pub debuginfo: Option<String>,
}

impl std::fmt::Display for MoodleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.errorcode, self.exception, self.message)
    }
}

const MOODLE_EXCEPTION: &str = "moodle_exception";
const ACCESS_EXCEPTION: &str = "webservice_access_exception";

impl MoodleError {
    fn new(exception: &'static str, errorcode: &'static str, message: impl Into<String>) -> Self {
        MoodleError { exception, errorcode, message: message.into(), debuginfo: None }
    }

    fn with_debug(mut self, debuginfo: impl Into<String>) -> Self {
        self.debuginfo = Some(debuginfo.into());
        self
    }

    pub fn invalid_token() -> Self {
        Self::new(MOODLE_EXCEPTION, "invalidtoken", "Invalid token - token not found")
    }

    /// Moodle's `webservice_access_exception`: a fixed message, the reason in `debuginfo`.
    pub fn access(reason: impl Into<String>) -> Self {
        Self::new(ACCESS_EXCEPTION, "accessexception", "Access control exception").with_debug(reason)
    }

    pub fn token_expired() -> Self {
        Self::access("Invalid token - token expired - check validuntil time for the token")
    }

    pub fn ip_not_allowed(ip: &str) -> Self {
        Self::access(format!("Invalid service - IP:{ip} is not supported - check this allowed user"))
    }

    pub fn function_not_allowed(function: &str) -> Self {
        Self::access(format!(
            "Access to the function {function}() is not allowed. There could be multiple reasons for this: \
             1. The service linked to the user token does not contain the function. \
             2. The service is user-restricted and the user is not on the allowed user list. \
             3. The service is disabled. 4. The key type is disabled."
        ))
    }

    pub fn user_suspended(username: &str) -> Self {
        Self::new(
            MOODLE_EXCEPTION,
            "wsaccessusersuspended",
            format!("Refused web service access for suspended username: {username}"),
        )
    }

    pub fn invalid_parameter(debuginfo: impl Into<String>) -> Self {
        Self::new("invalid_parameter_exception", "invalidparameter", "Invalid parameter value detected")
            .with_debug(debuginfo)
    }

    pub fn missing_key(key: &str) -> Self {
        Self::invalid_parameter(format!("Missing required key in single structure: {key}"))
    }

    /// Moodle's coding_exception, which the app's AJAX client answers by retrying as a GET.
    pub fn coding_error(debuginfo: impl Into<String>) -> Self {
        Self::new("coding_exception", "codingerror", "Coding error detected, it must be fixed by a programmer")
            .with_debug(debuginfo)
    }

    /// A function that needs a token, asked for through the no-login AJAX service.
    pub fn service_requires_login(function: &str) -> Self {
        Self::new(MOODLE_EXCEPTION, "servicerequireslogin", "Web service is not available without login")
            .with_debug(format!("{function} requires a signed-in user"))
    }

    pub fn invalid_login() -> Self {
        Self::new(MOODLE_EXCEPTION, "invalidlogin", "Invalid login, please try again")
    }

    pub fn service_not_available() -> Self {
        Self::new(
            MOODLE_EXCEPTION,
            "servicenotavailable",
            "Web service is not available. (It doesn't exist or might be disabled.)",
        )
    }

    pub fn missing_param(name: &str) -> Self {
        Self::new(MOODLE_EXCEPTION, "missingparam", format!("A required parameter ({name}) was missing"))
    }

    pub fn invalid_private_token() -> Self {
        Self::new(
            MOODLE_EXCEPTION,
            "invalidprivatetoken",
            "Invalid private token. Token should not be empty or passed via GET parameter.",
        )
    }

    pub fn app_required() -> Self {
        Self::new(
            MOODLE_EXCEPTION,
            "apprequired",
            "This functionality is only available when accessed via the Moodle mobile or desktop app.",
        )
    }

    pub fn https_required() -> Self {
        Self::new(MOODLE_EXCEPTION, "httpsrequired", "HTTPS required")
    }

    pub fn autologin_not_allowed_to_admins() -> Self {
        Self::new(MOODLE_EXCEPTION, "autologinnotallowedtoadmins", "Auto-login is not allowed for site admins.")
    }

    pub fn autologin_lockout(minutes: i64) -> Self {
        Self::new(
            MOODLE_EXCEPTION,
            "autologinkeygenerationlockout",
            format!("Auto-login key generation is blocked. You need to wait {minutes} minutes between requests."),
        )
    }

    pub fn invalid_key() -> Self {
        Self::new(MOODLE_EXCEPTION, "invalidkey", "Incorrect key")
    }

    pub fn request_too_large() -> Self {
        Self::invalid_parameter("The request is larger than this server accepts.")
    }

    pub fn database(e: &DbError) -> Self {
        match e {
            // An outage is logged once by the pool, not once per call.
            DbError::Pool(_) => tracing::warn!(error = %e, "no database connection for a web-service call"),
            _ => tracing::error!(error = %e, "database error in a web-service call"),
        }
        Self::new("dml_read_exception", "dmlreadexception", "Error reading from database")
    }
}

impl From<DbError> for MoodleError {
    fn from(e: DbError) -> Self {
        MoodleError::database(&e)
    }
}

/// The core's errors in Moodle's words. A refused key is worded as Moodle's
/// `validate_user_key` words a private key; a refused token goes through `for_token`.
impl From<CoreError> for MoodleError {
    fn from(e: CoreError) -> Self {
        match e {
            CoreError::Refused(Refusal::Expired) => MoodleError::expired_key(),
            CoreError::Refused(Refusal::AddressNotAllowed(_)) => MoodleError::ip_mismatch(),
            CoreError::Refused(_) => MoodleError::invalid_key(),
            CoreError::SignIn(_) => MoodleError::invalid_login(),
            CoreError::NotFound => MoodleError::invalid_parameter("No such record of yours."),
            CoreError::Invalid(m) => MoodleError::invalid_parameter(m),
            CoreError::NotAllowed(m) => MoodleError::access(m),
            CoreError::InvalidField { message, .. } => MoodleError::invalid_parameter(message),
            CoreError::MissingCapability(c) => MoodleError::no_permissions(c.description(), c.name()),
            CoreError::ServiceUnavailable => MoodleError::service_not_available(),
            CoreError::TokensDisabled(service) => MoodleError::cannot_create_token(&service),
            CoreError::HttpsRequired => MoodleError::https_required(),
            CoreError::NotForSiteAdmins => MoodleError::autologin_not_allowed_to_admins(),
            CoreError::TooSoon(minutes) => MoodleError::autologin_lockout(minutes),
            CoreError::PrivateTokenMismatch => MoodleError::invalid_private_token(),
            CoreError::Db(e) => MoodleError::database(&e),
        }
    }
}

impl MoodleError {
    /// A refused web-service token, as Moodle's web-service server words it. An expired token
    /// is told "expired" once (the core says when), so the app asks the person to sign in.
    pub fn for_token(e: CoreError) -> Self {
        match e {
            CoreError::Refused(Refusal::Unknown) => MoodleError::invalid_token(),
            CoreError::Refused(Refusal::Expired) => MoodleError::token_expired(),
            CoreError::Refused(Refusal::AddressNotAllowed(ip)) => MoodleError::ip_not_allowed(&ip.to_string()),
            CoreError::Refused(Refusal::TypeDisabled) => {
                MoodleError::access("Web-service tokens are disabled on this site.")
            }
            CoreError::Refused(Refusal::OwnerSuspended(username)) => MoodleError::user_suspended(&username),
            other => other.into(),
        }
    }
}

impl MoodleError {
    pub fn cannot_create_token(service: &str) -> Self {
        Self::new(MOODLE_EXCEPTION, "cannotcreatetoken", format!("Cannot create a new token for service {service}"))
    }

    /// Moodle's `required_capability_exception`: the capability's description in the message,
    /// its name in `debuginfo`.
    pub fn no_permissions(what: &str, capability: &str) -> Self {
        Self::new(
            "required_capability_exception",
            "nopermissions",
            format!("Sorry, but you do not currently have permissions to do that ({what})."),
        )
        .with_debug(capability)
    }

    pub fn expired_key() -> Self {
        Self::new(MOODLE_EXCEPTION, "expiredkey", "Expired key")
    }

    pub fn ip_mismatch() -> Self {
        Self::new(MOODLE_EXCEPTION, "ipmismatch", "Client IP address mismatch")
    }

    pub fn qr_code_disabled() -> Self {
        Self::new(MOODLE_EXCEPTION, "qrcodedisabled", "Access via QR code disabled")
    }
}

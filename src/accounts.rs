//! Accounts: creating users and checking their passwords.

use crate::db::models::{NewUser, User};
use crate::db::{users, DbConn, DbError, DbResult};
use crate::domain::password::{dummy_hash, hash_password, verify_password};
use crate::domain::time::now;

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("username must be 1–100 characters: lowercase letters, digits, and . _ - @")]
    InvalidUsername,
    #[error("password must be at least 8 characters")]
    WeakPassword,
    #[error("a user named “{0}” already exists")]
    Exists(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

/// Moodle lowercases usernames and allows a small alphabet (without extended usernames).
pub fn normalise_username(raw: &str) -> Result<String, AccountError> {
    let name = raw.trim().to_lowercase();
    let ok = !name.is_empty()
        && name.chars().count() <= 100
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "._-@".contains(c));
    if ok { Ok(name) } else { Err(AccountError::InvalidUsername) }
}

pub struct NewAccount<'a> {
    pub username: &'a str,
    pub fullname: &'a str,
    pub email: &'a str,
    pub password: &'a str,
    pub site_admin: bool,
}

/// Creates a user (argon2id hash computed here: call it off the async workers).
pub fn create(conn: &mut DbConn, account: &NewAccount) -> Result<i64, AccountError> {
    let username = normalise_username(account.username)?;
    if account.password.chars().count() < 8 {
        return Err(AccountError::WeakPassword);
    }
    if users::find_by_username(conn, &username)?.is_some() {
        return Err(AccountError::Exists(username));
    }
    let hash = hash_password(account.password);
    let fullname = if account.fullname.trim().is_empty() { username.as_str() } else { account.fullname.trim() };
    Ok(users::insert(
        conn,
        &NewUser {
            username: &username,
            fullname,
            email: account.email.trim(),
            password_hash: &hash,
            suspended: false,
            is_site_admin: account.site_admin,
            created_at: now(),
        },
    )?)
}

/// Runs argon2 off the async workers, a bounded number at a time, so a burst of sign-ins
/// neither stalls other requests nor holds unbounded memory (≈19 MiB each).
pub struct PasswordCheck {
    permits: tokio::sync::Semaphore,
}

impl PasswordCheck {
    pub fn new(parallel: usize) -> Self {
        PasswordCheck { permits: tokio::sync::Semaphore::new(parallel.max(1)) }
    }

    /// Whether `password` is the user's. For an unknown user it verifies against a dummy hash,
    /// so the time taken does not tell whether the username exists.
    pub async fn matches(&self, user: Option<&User>, password: &str) -> bool {
        let stored = user.map_or(dummy_hash(), |u| u.password_hash.as_str()).to_owned();
        let password = password.to_owned();
        let Ok(_permit) = self.permits.acquire().await else { return false };
        let ok = actix_web::web::block(move || verify_password(&password, &stored)).await.unwrap_or(false);
        ok && user.is_some()
    }
}

pub fn find_by_login_name(conn: &mut DbConn, username: &str) -> DbResult<Option<User>> {
    match normalise_username(username) {
        Ok(name) => users::find_by_username(conn, &name),
        Err(_) => Ok(None),
    }
}

/// Failed sign-ins allowed per account, and per address, within `THROTTLE_WINDOW_MINUTES`
/// before further attempts are refused without checking the password. Counted from the audit
/// trail, so every instance on a shared database sees the same counts.
pub const THROTTLE_PER_ACCOUNT: i64 = 10;
pub const THROTTLE_PER_ADDRESS: i64 = 50;
pub const THROTTLE_WINDOW_MINUTES: i64 = 15;

pub fn sign_in_throttled(conn: &mut DbConn, user_id: Option<i64>, ip: &str) -> DbResult<bool> {
    let since = now() - chrono::Duration::minutes(THROTTLE_WINDOW_MINUTES);
    let (by_user, by_ip) = crate::db::audit::failures_since(conn, user_id, ip, since)?;
    Ok(by_user >= THROTTLE_PER_ACCOUNT || by_ip >= THROTTLE_PER_ADDRESS)
}

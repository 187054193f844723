//! Typed settings: one environment variable (and flag) per setting, defaults documented here.

use clap::Args;

#[derive(Args, Clone, Debug)]
pub struct Config {
    /// Database: a SQLite file (`sqlite://FILE` or a path; created and migrated at start) or
    /// `postgres://user@host/db`.
    #[arg(long, env = "DATABASE_URL", default_value = "sqlite://userkeys.sqlite3", global = true)]
    pub database_url: String,

    /// Address to listen on.
    #[arg(long, env = "USERKEYS_BIND", default_value = "127.0.0.1:8080")]
    pub bind: String,

    /// Mark cookies `Secure` (serve over HTTPS, directly or behind a TLS proxy).
    #[arg(long, env = "USERKEYS_SECURE_COOKIES", default_value_t = false, action = clap::ArgAction::Set)]
    pub secure_cookies: bool,

    /// The site's public address as clients see it, e.g. https://moodle.example.org. An https
    /// address means clients reach the site over TLS (perhaps through a proxy): then
    /// `login/token.php` also returns the private token, as Moodle does over HTTPS.
    #[arg(long, env = "USERKEYS_WWWROOT")]
    pub wwwroot: Option<String>,

    /// The site's name, shown on pages and returned to the mobile app.
    #[arg(long, env = "USERKEYS_SITE_NAME", default_value = "userkeys")]
    pub site_name: String,

    /// The time zone pages show times in when the browser has not said its own (a name such as
    /// `Europe/Berlin`); browsers with JavaScript tell theirs.
    #[arg(long, env = "USERKEYS_TIMEZONE", default_value = "UTC", value_parser = parse_zone)]
    pub timezone: chrono_tz::Tz,

    /// Take the client address from X-Forwarded-For (only behind a proxy you run).
    #[arg(long, env = "USERKEYS_TRUST_PROXY", default_value_t = false, action = clap::ArgAction::Set)]
    pub trust_proxy: bool,

    /// Minutes a web session lasts without use.
    #[arg(long, env = "USERKEYS_SESSION_TIMEOUT_MINUTES", default_value_t = 480)]
    pub session_timeout_minutes: i64,

    /// Days a web-service token issued at login lasts (Moodle's default is 12 weeks).
    #[arg(long, env = "USERKEYS_TOKEN_DAYS", default_value_t = 84)]
    pub token_days: i64,

    /// Connections per database pool.
    #[arg(long, env = "USERKEYS_DB_POOL_SIZE", default_value_t = 8)]
    pub db_pool_size: u32,

    /// Add debug information to web-service errors, as Moodle does in developer debug mode.
    #[arg(long, env = "USERKEYS_DEBUG", default_value_t = false, action = clap::ArgAction::Set)]
    pub debug: bool,

    /// Whether key types registered by plugins start enabled; when false an admin turns each on.
    #[arg(long, env = "USERKEYS_NEW_KEY_TYPES_ENABLED", default_value_t = true, action = clap::ArgAction::Set)]
    pub new_key_types_enabled: bool,

    /// Keep validated tokens in memory: `auto` or `on` (the default, on both backends), `off`.
    /// PostgreSQL instances keep their caches coherent with each other; several instances on
    /// one SQLite file cannot, and must set it `off`.
    #[arg(long, env = "USERKEYS_TOKEN_CACHE", default_value = "auto", value_parser = ["auto", "on", "off"])]
    pub token_cache: String,

    /// Memory for the token cache, in MiB: validated tokens and their owners, about 110 bytes a
    /// token plus 400 an owner. Past it the least useful are evicted (a later use of one reads
    /// the database once), so a site with more active tokens than fit keeps its busy ones.
    /// The default holds about two million tokens; 0 gives the smallest cache (64 KiB).
    #[arg(long, env = "USERKEYS_TOKEN_CACHE_MB", default_value_t = 256)]
    pub token_cache_mb: u64,

    /// How the Moodle app signs people in (Moodle's `typeoflogin`): `app` (a form in the app),
    /// `browser` (the site's own sign-in page in a browser, handing the token back through
    /// launch.php) or `embedded` (the same page inside the app).
    #[arg(long, env = "USERKEYS_APP_LOGIN", default_value = "app", value_parser = ["app", "browser", "embedded"])]
    pub app_login: String,

    /// After a password is changed or reset, revoke the person's other web sessions and
    /// web-service tokens (as Moodle does since CVE-2016-7038).
    #[arg(long, env = "USERKEYS_REVOKE_ON_PASSWORD_CHANGE", default_value_t = true, action = clap::ArgAction::Set)]
    pub revoke_keys_on_password_change: bool,

    /// Serve the benchmark's no-op endpoints (`/ping`); off in production.
    #[arg(long, env = "USERKEYS_BENCH_ENDPOINTS", default_value_t = false, action = clap::ArgAction::Set)]
    pub bench_endpoints: bool,

    /// The SMTP server mail goes through (password reset links): `smtp://host:25`,
    /// `smtp://user:pass@host:587?tls=required` or `smtps://host:465`. Without it, no mail is
    /// sent and the sign-in page offers no reset by email.
    #[arg(long, env = "USERKEYS_SMTP_URL")]
    pub smtp_url: Option<String>,

    /// The sender of the site's mail.
    #[arg(long, env = "USERKEYS_MAIL_FROM", default_value = "userkeys <noreply@localhost>")]
    pub mail_from: String,

    /// Keys of these types unused for this many days (since their last use, or since they were
    /// made if never used) are revoked by a background job, reason "expired unused"; the
    /// owner's page says beforehand by when. Off unless set, e.g.
    /// `webservice_token=90,rss=180,calendar_export=180`.
    #[arg(long, env = "USERKEYS_EXPIRE_UNUSED_DAYS", default_value = "", value_parser = parse_unused_limits)]
    pub expire_unused_days: UnusedLimits,

    /// Seconds between two runs of the background upkeep: mailing new-client alerts, revoking
    /// keys unused too long.
    #[arg(long, env = "USERKEYS_UPKEEP_SECONDS", default_value_t = 60)]
    pub upkeep_seconds: u64,

    /// The longest a personal access token may be valid, in days (its expiry is required).
    #[arg(long, env = "USERKEYS_PERSONAL_TOKEN_MAX_DAYS", default_value_t = 90)]
    pub personal_token_max_days: i64,

    /// Let every person create personal access tokens; otherwise only site admins and holders
    /// of `tool/userkeys:createpersonaltoken` (the `integrator` role) may.
    #[arg(long, env = "USERKEYS_PERSONAL_TOKENS_FOR_EVERYONE", default_value_t = false, action = clap::ArgAction::Set)]
    pub personal_tokens_for_everyone: bool,

    /// HTTP worker threads (default: one per CPU).
    #[arg(long, env = "USERKEYS_WORKERS")]
    pub workers: Option<usize>,
}

impl Config {
    /// Defaults for a given database, as a test or an embedding program wants them.
    pub fn for_database(database_url: &str) -> Self {
        use clap::Parser;
        #[derive(Parser)]
        struct Only {
            #[command(flatten)]
            config: Config,
        }
        let mut config = Only::parse_from(["userkeys"]).config;
        config.database_url = database_url.to_owned();
        config
    }

    /// The public base URL without a trailing slash.
    pub fn wwwroot_or(&self, fallback: &str) -> String {
        self.wwwroot.clone().unwrap_or_else(|| fallback.to_owned()).trim_end_matches('/').to_owned()
    }

    /// The site's public address without a trailing slash: `USERKEYS_WWWROOT`, or the address
    /// it listens on.
    pub fn site_root(&self) -> String {
        self.wwwroot_or(&format!("http://{}", self.bind))
    }

    /// Moodle's `typeoflogin`: 1 in the app, 2 in a browser, 3 embedded in the app.
    pub fn type_of_login(&self) -> u8 {
        match self.app_login.as_str() {
            "browser" => 2,
            "embedded" => 3,
            _ => 1,
        }
    }

    pub fn token_cache_enabled(&self) -> bool {
        self.token_cache != "off"
    }

    pub fn served_over_https(&self) -> bool {
        self.wwwroot.as_deref().is_some_and(|w| w.starts_with("https://"))
    }
}

fn parse_zone(name: &str) -> Result<chrono_tz::Tz, String> {
    crate::domain::time::zone_named(name)
        .ok_or_else(|| format!("“{name}” is not a time zone name such as Europe/Berlin"))
}

/// Days after which an unused key of a type is revoked, per type (`USERKEYS_EXPIRE_UNUSED_DAYS`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UnusedLimits(pub Vec<(String, i64)>);

impl UnusedLimits {
    /// The days for a type, if its unused keys expire.
    pub fn days_for(&self, key_type: &str) -> Option<i64> {
        self.0.iter().find(|(t, _)| t == key_type).map(|(_, d)| *d)
    }
}

fn parse_unused_limits(text: &str) -> Result<UnusedLimits, String> {
    let mut limits = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (key_type, days) = part
            .split_once('=')
            .ok_or_else(|| format!("“{part}”: write a key type and a number of days, as webservice_token=90"))?;
        let days: i64 = days
            .trim()
            .parse()
            .ok()
            .filter(|d| (1..=36_500).contains(d))
            .ok_or_else(|| format!("“{part}”: the days are a whole number from 1 to 36500"))?;
        limits.push((key_type.trim().to_owned(), days));
    }
    Ok(UnusedLimits(limits))
}

use clap::{Parser, Subcommand};
use std::io::Read;
use userkeys::accounts::{self, NewAccount};
use userkeys::app::Application;
use userkeys::config::Config;
use userkeys::db::Db;

/// mimalloc: per-thread heaps spare the request threads the locking and consolidation glibc's
/// malloc costs them (a fifth more validated requests per second here). Configured in
/// `tune_allocator` to give memory back at once.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// userkeys — every key that opens your account, and who used it.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    config: Config,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the web pages and Moodle's protocol (the default).
    Serve,
    /// Create or update the database schema, then exit.
    Migrate,
    /// Manage accounts.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Manage admin roles (keymanager, auditor, helpdesk, integrator).
    Role {
        #[command(subcommand)]
        command: RoleCommand,
    },
}

#[derive(Subcommand)]
enum RoleCommand {
    /// Give a user a role.
    Assign { username: String, role: String },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create an account; the password is read from standard input.
    Add {
        username: String,
        #[arg(long)]
        admin: bool,
        /// Read the password from standard input (required: passwords never go on the command line).
        #[arg(long, required = true)]
        password_stdin: bool,
        #[arg(long, default_value = "")]
        fullname: String,
        #[arg(long, default_value = "")]
        email: String,
    },
    /// Set an account's password, read from standard input; its other sessions and tokens are
    /// revoked (unless USERKEYS_REVOKE_ON_PASSWORD_CHANGE=false).
    Passwd {
        username: String,
        /// Read the password from standard input (required: passwords never go on the command line).
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    /// Suspend an account: it can no longer sign in, and none of its keys opens anything.
    Suspend { username: String },
    /// Lift an account's suspension.
    Unsuspend { username: String },
}

fn main() -> anyhow::Result<()> {
    limit_malloc_arenas();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,actix_server=warn".into()),
        )
        .init();
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(cli.config),
        Command::Migrate => {
            Db::connect(&cli.config.database_url, 1)?;
            println!("database is up to date");
            Ok(())
        }
        Command::User { command: UserCommand::Add { username, admin, password_stdin: _, fullname, email } } => {
            let mut password = String::new();
            std::io::stdin().read_to_string(&mut password)?;
            let password = password.trim_end_matches(['\n', '\r']);
            let db = Db::connect(&cli.config.database_url, 1)?;
            let account =
                NewAccount { username: &username, fullname: &fullname, email: &email, password, site_admin: admin };
            let id = db.write_blocking(|conn| Ok(accounts::create(conn, &account)))??;
            println!(
                "created user {} (id {id}){}",
                username.trim().to_lowercase(),
                if admin { " as site admin" } else { "" }
            );
            Ok(())
        }
        Command::User { command: UserCommand::Passwd { username, password_stdin: _ } } => {
            let mut password = String::new();
            std::io::stdin().read_to_string(&mut password)?;
            let password = password.trim_end_matches(['\n', '\r']).to_owned();
            with_core(
                cli.config,
                move |core, user_id| async move {
                    let revoked = core.set_password(None, user_id, &password, None, None).await?;
                    Ok(format!("password changed; {revoked} sessions and tokens revoked"))
                },
                &username,
            )
        }
        Command::User { command: UserCommand::Suspend { username } } => with_core(
            cli.config,
            |core, user_id| async move {
                core.set_suspended(None, user_id, true, None).await?;
                Ok("suspended".to_owned())
            },
            &username,
        ),
        Command::User { command: UserCommand::Unsuspend { username } } => with_core(
            cli.config,
            |core, user_id| async move {
                core.set_suspended(None, user_id, false, None).await?;
                Ok("suspension lifted".to_owned())
            },
            &username,
        ),
        Command::Role { command: RoleCommand::Assign { username, role } } => {
            let db = Db::connect(&cli.config.database_url, 1)?;
            userkeys::setup::seed_services_and_roles(
                &db,
                &userkeys::moodle::functions::mobile_app_functions(),
                &userkeys::moodle::functions::admin_service_functions(),
            )?;
            let name = username.trim().to_lowercase();
            db.write_blocking(|conn| {
                let user = userkeys::db::users::find_by_username(conn, &name)?;
                let role_id = userkeys::db::roles::find(conn, &role)?;
                Ok(user.zip(role_id).map(|(u, r)| userkeys::db::roles::assign(conn, u.id, r)).transpose()?.is_some())
            })?
            .then(|| println!("{name} now has the role {role}"))
            .ok_or_else(|| {
                let roles: Vec<&str> = userkeys::domain::capability::DEFAULT_ROLES.iter().map(|(r, ..)| *r).collect();
                anyhow::anyhow!("no such user “{name}” or role “{role}” (roles: {})", roles.join(", "))
            })
        }
    }
}

/// Runs one of the core's account actions on the user named, as the command line does: no
/// server, no cache, the audit trail names no actor.
fn with_core<F, Fut>(mut config: Config, action: F, username: &str) -> anyhow::Result<()>
where
    F: FnOnce(std::sync::Arc<userkeys::core::Core>, i64) -> Fut,
    Fut: std::future::Future<Output = Result<String, userkeys::core::CoreError>>,
{
    config.token_cache = "off".into();
    let name = username.trim().to_lowercase();
    actix_web::rt::System::new().block_on(async move {
        let db = Db::connect(&config.database_url, 2)?;
        let lookup = name.clone();
        let user = db.read(move |conn| userkeys::db::users::find_by_username(conn, &lookup)).await?;
        let user = user.ok_or_else(|| anyhow::anyhow!("no such user “{name}”"))?;
        let registry = userkeys::keys::KeyTypeRegistry::with_core_types();
        let core = std::sync::Arc::new(userkeys::core::Core::new(db, registry, config)?);
        let done = action(core, user.id).await.map_err(|e| anyhow::anyhow!("{name}: {}", describe(&e)))?;
        println!("{name}: {done}");
        Ok(())
    })
}

fn describe(e: &userkeys::core::CoreError) -> String {
    match e {
        userkeys::core::CoreError::Invalid(m) | userkeys::core::CoreError::NotAllowed(m) => m.clone(),
        other => other.to_string(),
    }
}

fn serve(config: Config) -> anyhow::Result<()> {
    actix_web::rt::System::new().block_on(async move {
        let app = Application::build(config.clone())?;
        let addr = app.local_addr().map_or(config.bind.clone(), |a| a.to_string());
        println!("userkeys is listening on http://{addr} — open it in a browser to sign in");
        app.run().await
    })
}

/// Freed memory goes back to the system at once, and arenas are committed as they are used
/// rather than up front: without this, every sign-in's 19 MiB argon2 buffer and every fold's
/// merge stay resident for a while, and peak memory is half as much again. It must run before
/// the first allocation, which reserves mimalloc's first arena, so it runs as a constructor,
/// before the Rust runtime starts.
#[cfg(target_os = "linux")]
#[used]
#[link_section = ".init_array"]
static TUNE_ALLOCATOR: extern "C" fn() = tune_allocator;

extern "C" fn tune_allocator() {
    // mimalloc's option numbers (`mi_option_e` in its v3 mimalloc.h).
    const ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
    const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    // SAFETY: mi_option_set only stores an option value; any value is valid for these two.
    unsafe {
        libmimalloc_sys::mi_option_set(ARENA_EAGER_COMMIT, 0);
        libmimalloc_sys::mi_option_set(PURGE_DELAY, 0);
    }
}

/// The C libraries (SQLite, libpq) still allocate through glibc, whose defaults grow memory here:
/// each thread that allocates gets its own arena that keeps freed memory (database work moves
/// between pool threads). Two arenas and a fixed 1 MiB mmap threshold keep their footprint flat.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn limit_malloc_arenas() {
    // SAFETY: mallopt only sets allocator parameters; it is called before any other thread starts.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn limit_malloc_arenas() {}

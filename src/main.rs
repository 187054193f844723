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
    /// Manage admin roles (keymanager, auditor, helpdesk).
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
        Command::Role { command: RoleCommand::Assign { username, role } } => {
            let db = Db::connect(&cli.config.database_url, 1)?;
            userkeys::setup::seed_services_and_roles(&db, &userkeys::moodle::functions::mobile_app_functions())?;
            let name = username.trim().to_lowercase();
            db.write_blocking(|conn| {
                let user = userkeys::db::users::find_by_username(conn, &name)?;
                let role_id = userkeys::db::roles::find(conn, &role)?;
                Ok(user.zip(role_id).map(|(u, r)| userkeys::db::roles::assign(conn, u.id, r)).transpose()?.is_some())
            })?
            .then(|| println!("{name} now has the role {role}"))
            .ok_or_else(|| {
                anyhow::anyhow!("no such user “{name}” or role “{role}” (roles: keymanager, auditor, helpdesk)")
            })
        }
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

use clap::{Parser, Subcommand};
use std::io::Read;
use userkeys::accounts::{self, NewAccount};
use userkeys::app::Application;
use userkeys::config::Config;
use userkeys::db::Db;

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
            let account = NewAccount { username: &username, fullname: &fullname, email: &email, password, site_admin: admin };
            let id = db.write_blocking(|conn| Ok(accounts::create(conn, &account)))??;
            println!("created user {} (id {id}){}", username.trim().to_lowercase(), if admin { " as site admin" } else { "" });
            Ok(())
        }
        Command::Role { command: RoleCommand::Assign { username, role } } => {
            let db = Db::connect(&cli.config.database_url, 1)?;
            userkeys::setup::seed_services_and_roles(&db)?;
            let name = username.trim().to_lowercase();
            db.write_blocking(|conn| {
                let user = userkeys::db::users::find_by_username(conn, &name)?;
                let role_id = userkeys::db::roles::find(conn, &role)?;
                Ok(user.zip(role_id).map(|(u, r)| userkeys::db::roles::assign(conn, u.id, r)).transpose()?.is_some())
            })?
            .then(|| println!("{name} now has the role {role}"))
            .ok_or_else(|| anyhow::anyhow!("no such user “{name}” or role “{role}” (roles: keymanager, auditor, helpdesk)"))
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

/// glibc's defaults grow memory without bound here: each thread that allocates gets its own
/// arena that keeps freed memory (database work moves between pool threads), and after the
/// first 19 MiB argon2 buffer is freed glibc raises its mmap threshold, so later buffers come
/// from the heap and are not given back. Two arenas and a fixed 1 MiB threshold (big buffers
/// always mapped and unmapped) keep the footprint flat.
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

//! What a new site needs: the mobile app's service and a first site admin.

use crate::accounts::{self, NewAccount};
use crate::db::{roles, services, users, Db};
use crate::domain::capability::DEFAULT_ROLES;
use crate::domain::secret::ClearSecret;
use crate::domain::time::now;

pub use crate::core::{ADMIN_SERVICE, MOBILE_SERVICE};

/// The mobile app's service (offering `functions`), the administrators' scripting service
/// (offering `admin_functions`) and the default roles, then a first site admin if there is none.
pub fn seed_site(db: &Db, functions: &[&str], admin_functions: &[&str]) -> anyhow::Result<()> {
    seed_services_and_roles(db, functions, admin_functions)?;
    create_first_admin(db)
}

/// What every site has: the mobile app's service, the administrators' scripting service and the
/// default roles (idempotent).
pub fn seed_services_and_roles(db: &Db, functions: &[&str], admin_functions: &[&str]) -> anyhow::Result<()> {
    db.write_blocking(|conn| {
        services::ensure(conn, MOBILE_SERVICE, "Moodle mobile web service", true, functions, now())?;
        services::ensure(conn, ADMIN_SERVICE, "userkeys administration", true, admin_functions, now())?;
        for (shortname, name, capabilities) in DEFAULT_ROLES {
            let names: Vec<&str> = capabilities.iter().map(|c| c.name()).collect();
            roles::ensure(conn, shortname, name, &names)?;
        }
        Ok(())
    })?;
    Ok(())
}

fn create_first_admin(db: &Db) -> anyhow::Result<()> {
    if db.read_blocking(users::count_site_admins)? > 0 {
        return Ok(());
    }
    let password = ClearSecret::long().expose()[..20].to_owned();
    let account = NewAccount {
        username: "admin",
        fullname: "Site administrator",
        email: "",
        password: &password,
        site_admin: true,
    };
    let admin = match db.write_blocking(|conn| Ok(accounts::create(conn, &account)))? {
        Ok(_) => Some(password.clone()),
        // An account called "admin" that is not an admin: leave it alone and say so.
        Err(accounts::AccountError::Exists(_)) => {
            println!(
                "There is no site administrator; make one with `userkeys user add NAME --admin --password-stdin`."
            );
            None
        }
        Err(e) => return Err(e.into()),
    };
    if let Some(password) = admin {
        println!(
            "\nA site administrator was created. Sign in with\n  username: admin\n  password: {password}\n\
             (shown once; create more accounts with `userkeys user add NAME --password-stdin`)\n"
        );
    }
    Ok(())
}

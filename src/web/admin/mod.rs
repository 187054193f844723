//! The site admin's side: every key site-wide, one person's keys, force logout, issuing tokens,
//! services and key types on and off, the audit trail. Each page checks its capability.

mod audit;
mod issue;
mod keys;
mod services;
mod user;

use super::error::AppError;
use super::session::CurrentSession;
use super::{State, WebState};
use crate::core::Capability;
use actix_web::{dev::Payload, web, FromRequest, HttpRequest};
use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/admin/userkeys/index.php", web::get().to(keys::index))
        .route("/admin/userkeys/export.php", web::get().to(keys::export))
        .route("/admin/userkeys/revoke.php", web::get().to(keys::confirm_matching))
        .route("/admin/userkeys/revoke.php", web::post().to(keys::revoke_selected))
        .route("/admin/userkeys/user.php", web::get().to(user::page))
        .route("/admin/userkeys/forcelogout.php", web::get().to(user::confirm_force_logout))
        .route("/admin/userkeys/forcelogout.php", web::post().to(user::force_logout))
        .route("/admin/userkeys/suspend.php", web::post().to(user::suspend))
        .route("/admin/userkeys/resetlink.php", web::post().to(user::reset_link))
        .route("/admin/userkeys/issue.php", web::get().to(issue::form))
        .route("/admin/userkeys/issue.php", web::post().to(issue::submit))
        .route("/admin/userkeys/services.php", web::get().to(services::page))
        .route("/admin/userkeys/services.php", web::post().to(services::toggle))
        .route("/admin/userkeys/audit.php", web::get().to(audit::page))
        .route("/static/admin.js", web::get().to(script));
}

/// The admin console's one script: "select all" for the key tables (where no script runs, the
/// list offers "Revoke all matching" instead). Served from the site, as the policy allows.
async fn script() -> actix_web::HttpResponse {
    actix_web::HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        .insert_header((actix_web::http::header::CACHE_CONTROL, "public, max-age=3600"))
        .body(include_str!("../../../static/admin.js"))
}

/// A signed-in person and what they may do on the admin side.
pub struct AdminSession {
    pub session: CurrentSession,
    pub capabilities: HashSet<Capability>,
    /// Now, and the admin's time zone, for the times the pages write.
    pub clock: crate::web::templates::Clock,
    /// What the last action did ("Revoked 2 keys."), shown once by `page`.
    pub flash: Option<String>,
}

impl AdminSession {
    /// 403 with a clear page unless the person has `capability`.
    pub fn require(&self, capability: Capability) -> Result<(), AppError> {
        if self.capabilities.contains(&capability) {
            Ok(())
        } else {
            Err(AppError::Forbidden(format!(
                "You do not have permission to {} (capability {}).",
                capability.description(),
                capability.name()
            )))
        }
    }

    /// A state-changing form of this admin's, as fields: refused unless they hold `capability`
    /// and the form carries their session's `sesskey`.
    pub fn posted_form(&self, capability: Capability, body: &[u8]) -> Result<Vec<(String, String)>, AppError> {
        self.require(capability)?;
        let pairs = form_pairs(body);
        self.session.check_sesskey(field(&pairs, "sesskey"))?;
        Ok(pairs)
    }

    pub fn can(&self, capability: Capability) -> bool {
        self.capabilities.contains(&capability)
    }

    pub fn context(&self, state: &WebState) -> tera::Context {
        let mut ctx = super::templates::base_context(state, &self.session, true);
        let caps: Vec<&str> = self.capabilities.iter().map(|c| c.name()).collect();
        ctx.insert("caps", &caps);
        ctx.insert("flash", &self.flash);
        ctx
    }

    /// Renders a page that shows the last action's message, which then goes.
    pub fn page(
        &self,
        state: &WebState,
        template: &str,
        ctx: &tera::Context,
    ) -> Result<actix_web::HttpResponse, AppError> {
        let mut response = super::templates::render(&state.templates, template, ctx)?;
        if self.flash.is_some() {
            super::flash::clear(&mut response)?;
        }
        Ok(response)
    }
}

impl FromRequest for AdminSession {
    type Error = AppError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, AppError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let session = CurrentSession::from_request(req, payload);
        let state = req.app_data::<State>().cloned();
        let clock = state.as_ref().map(|state| crate::web::templates::Clock::for_request(req, state));
        let flash = crate::web::flash::take(req);
        Box::pin(async move {
            let session = session.await?;
            let state = state.ok_or_else(|| AppError::Internal("application state missing".into()))?;
            let capabilities = state.core.capabilities_of(session.user.id).await?;
            if !capabilities.iter().any(|c| c.is_admin()) {
                return Err(AppError::Forbidden("This page is for site administrators.".into()));
            }
            let clock = clock.ok_or_else(|| AppError::Internal("application state missing".into()))?;
            Ok(AdminSession { session, capabilities, clock, flash })
        })
    }
}

/// Form fields as pairs, keeping repeated names (`key=1&key=2`), which serde forms drop.
pub fn form_pairs(body: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(body).map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
}

pub fn field<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// A positive page number from a query, 1 when absent or nonsense.
pub fn page_number(raw: Option<&str>) -> i64 {
    raw.and_then(|p| p.trim().parse::<i64>().ok()).filter(|p| *p >= 1 && *p <= 100_000).unwrap_or(1)
}

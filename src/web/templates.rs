//! Templates are compiled into the binary, so it runs from any directory.

use super::error::AppError;
use super::headers::CONTENT_SECURITY_POLICY;
use super::session::CurrentSession;
use super::WebState;
use actix_web::HttpResponse;

pub fn load() -> anyhow::Result<tera::Tera> {
    let mut tera = tera::Tera::default();
    tera.add_raw_templates(vec![
        ("base.html", include_str!("../../templates/base.html")),
        ("login.html", include_str!("../../templates/login.html")),
        ("managetoken.html", include_str!("../../templates/managetoken.html")),
        ("confirm.html", include_str!("../../templates/confirm.html")),
        ("newkey.html", include_str!("../../templates/newkey.html")),
        ("newkey_form.html", include_str!("../../templates/newkey_form.html")),
        ("personaltoken_form.html", include_str!("../../templates/personaltoken_form.html")),
        ("password.html", include_str!("../../templates/password.html")),
        ("forgot.html", include_str!("../../templates/forgot.html")),
        ("reset.html", include_str!("../../templates/reset.html")),
        ("admin_nav.html", include_str!("../../templates/admin_nav.html")),
        ("admin_keys.html", include_str!("../../templates/admin_keys.html")),
        ("admin_user.html", include_str!("../../templates/admin_user.html")),
        ("admin_forcelogout.html", include_str!("../../templates/admin_forcelogout.html")),
        ("admin_issue.html", include_str!("../../templates/admin_issue.html")),
        ("admin_services.html", include_str!("../../templates/admin_services.html")),
        ("admin_audit.html", include_str!("../../templates/admin_audit.html")),
    ])?;
    Ok(tera)
}

pub fn render(tera: &tera::Tera, name: &str, context: &tera::Context) -> Result<HttpResponse, AppError> {
    let body = tera.render(name, context).map_err(|e| AppError::Internal(format!("template {name}: {e:?}")))?;
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
        .insert_header(CONTENT_SECURITY_POLICY)
        .body(body))
}

/// What every signed-in page shows: the site, the person, the form key, the admin link.
pub fn base_context(state: &WebState, session: &CurrentSession, admin_link: bool) -> tera::Context {
    let mut ctx = tera::Context::new();
    ctx.insert("admin_link", &admin_link);
    ctx.insert("site_name", &state.core.config().site_name);
    ctx.insert("user", &session.user.fullname);
    ctx.insert("sesskey", &session.sesskey);
    ctx
}

/// The time zone to show times in: the browser's (told by /static/tz.js in the `tz` cookie),
/// else the site's.
pub fn viewer_zone(req: &actix_web::HttpRequest, state: &WebState) -> chrono_tz::Tz {
    req.cookie("tz")
        .and_then(|c| percent_decode(c.value()))
        .and_then(|name| crate::domain::time::zone_named(&name))
        .unwrap_or(state.core.config().timezone)
}

fn percent_decode(value: &str) -> Option<String> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(&format!("tz={value}")).ok()?.pop().map(|(_, v)| v)
}

/// "Now" and the viewer's time zone: how a page writes times.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    pub now: chrono::NaiveDateTime,
    pub zone: chrono_tz::Tz,
}

/// A time as people read it ("3 days ago"), with the exact time in the viewer's zone.
#[derive(serde::Serialize)]
pub struct Moment {
    pub relative: String,
    pub exact: String,
    pub iso: String,
}

impl Clock {
    pub fn for_request(req: &actix_web::HttpRequest, state: &WebState) -> Self {
        Clock { now: crate::domain::time::now(), zone: viewer_zone(req, state) }
    }

    pub fn relative(&self, at: chrono::NaiveDateTime) -> String {
        crate::domain::time::relative(at, self.now)
    }

    pub fn exact(&self, at: chrono::NaiveDateTime) -> String {
        crate::domain::time::exact_in(at, self.zone)
    }

    /// The day of a time in the viewer's zone: "3 March", with the year when it is not this one.
    pub fn day(&self, at: chrono::NaiveDateTime) -> String {
        use chrono::Datelike;
        let local = at.and_utc().with_timezone(&self.zone);
        let this_year = self.now.and_utc().with_timezone(&self.zone).year();
        if local.year() == this_year {
            local.format("%-d %B").to_string()
        } else {
            local.format("%-d %B %Y").to_string()
        }
    }

    pub fn moment(&self, at: chrono::NaiveDateTime) -> Moment {
        Moment { relative: self.relative(at), exact: self.exact(at), iso: at.and_utc().to_rfc3339() }
    }
}

//! Feeds opened by a private key instead of a session: RSS (Moodle's /rss/file.php path) and
//! calendar export (/calendar/export_execute.php). They answer only with a key the core finds
//! valid, and each use is recorded like a token's.

use super::error::MoodleError;
use super::State;
use crate::core::Expected;
use crate::http::client_of;
use crate::keys::{CALENDAR_EXPORT, RSS};
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::Utc;

/// /rss/file.php/{contextid}/{token}/{component}/{instance}/rss.xml
pub async fn rss(state: State, req: HttpRequest, path: web::Path<String>) -> HttpResponse {
    let client = client_of(&req);
    let token = path.split('/').filter(|s| !s.is_empty()).nth(1).unwrap_or("").to_owned();
    match state.core.validate(&token, Expected { key_type: RSS, owner: None }, &client).await {
        Ok(key) => {
            let config = state.core.config();
            let title = tera::escape_html(&format!("{} — {}", config.site_name, key.user.fullname));
            HttpResponse::Ok().content_type("application/rss+xml; charset=utf-8").body(format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\" ?>\n<rss version=\"2.0\">\n<channel>\n<title>{title}</title>\n\
                 <link>{}</link>\n<description>{title}</description>\n</channel>\n</rss>\n",
                tera::escape_html(&config.site_root())
            ))
        }
        // Moodle answers a bad RSS key with its "rsserror" feed; a plain 403 says the same.
        Err(e) => refused(e.into()),
    }
}

#[derive(serde::Deserialize)]
pub struct CalendarQuery {
    userid: Option<String>,
    authtoken: Option<String>,
}

pub async fn calendar(state: State, req: HttpRequest, query: web::Query<CalendarQuery>) -> HttpResponse {
    let client = client_of(&req);
    let userid = query.userid.as_deref().and_then(|u| u.trim().parse::<i64>().ok());
    let (Some(userid), Some(token)) = (userid, query.authtoken.as_deref()) else {
        return HttpResponse::BadRequest()
            .content_type("text/plain; charset=utf-8")
            .body("userid and authtoken are required");
    };
    match state.core.validate(token, Expected { key_type: CALENDAR_EXPORT, owner: Some(userid) }, &client).await {
        Ok(_) => HttpResponse::Ok().content_type("text/calendar; charset=utf-8").body(format!(
            "BEGIN:VCALENDAR\r\nMETHOD:PUBLISH\r\nPRODID:-//userkeys//NONSGML userkeys//EN\r\nVERSION:2.0\r\n\
             X-WR-CALNAME:{}\r\nX-PUBLISHED-TTL:PT1H\r\nX-GENERATED-AT:{}\r\nEND:VCALENDAR\r\n",
            state.core.config().site_name.replace(['\r', '\n'], " "),
            Utc::now().format("%Y%m%dT%H%M%SZ")
        )),
        Err(e) => refused(e.into()),
    }
}

fn refused(e: MoodleError) -> HttpResponse {
    HttpResponse::Forbidden().content_type("text/plain; charset=utf-8").body(e.message)
}

//! Errors of the web pages, mapped to HTML in one place. Moodle's protocol has its own error
//! type (`moodle::error`), which answers in Moodle's JSON.

use crate::core::DbError;
use crate::core::{CoreError, Refusal, SignInRefusal};
use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    BadRequest(String),
    /// No valid session: to the sign-in page, and back to `wants` after. `ended` when the
    /// browser had a session that is no longer valid (signed out elsewhere, expired, ended by an
    /// administrator), so the sign-in page can say so.
    #[error("Sign in to continue.")]
    LoginRequired { wants: Option<String>, ended: bool },
    #[error("{0}")]
    Forbidden(String),
    #[error("That key or page does not exist, or it is not yours.")]
    NotFound,
    #[error("This form has expired or did not come from this site. Nothing was changed; go back, reload the page and try again.")]
    StaleForm,
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("{0}")]
    Internal(String),
}

/// "Too many failed sign-ins. Wait 3 minutes and try again."
pub fn throttled_words(seconds: i64) -> String {
    let wait = match seconds {
        ..=59 => format!("{} second{}", seconds.max(1), if seconds == 1 { "" } else { "s" }),
        _ => {
            let minutes = (seconds + 59) / 60;
            format!("{minutes} minute{}", if minutes == 1 { "" } else { "s" })
        }
    };
    format!("Too many failed sign-ins. Wait {wait} and try again.")
}

impl From<CoreError> for AppError {
    fn from(e: CoreError) -> Self {
        match e {
            CoreError::Refused(Refusal::Expired) => AppError::Forbidden("This key has expired.".into()),
            CoreError::Refused(Refusal::AddressNotAllowed(_)) => {
                AppError::Forbidden("This key cannot be used from your address.".into())
            }
            CoreError::Refused(_) => AppError::Forbidden("This key is not valid.".into()),
            CoreError::SignIn(SignInRefusal::Throttled { seconds }) => AppError::Forbidden(throttled_words(seconds)),
            CoreError::SignIn(SignInRefusal::Suspended) => {
                AppError::Forbidden("Your account has been suspended.".into())
            }
            CoreError::SignIn(SignInRefusal::Invalid) => AppError::Forbidden("Invalid login, please try again".into()),
            CoreError::NotFound => AppError::NotFound,
            CoreError::Invalid(m) => AppError::BadRequest(m),
            CoreError::NotAllowed(m) => AppError::Forbidden(m),
            CoreError::InvalidField { message, .. } => AppError::BadRequest(message),
            CoreError::MissingCapability(c) => {
                AppError::Forbidden(format!("You do not have the permission to {}.", c.description()))
            }
            CoreError::ServiceUnavailable => AppError::Forbidden("That service is not available on this site.".into()),
            CoreError::TokensDisabled(s) => {
                AppError::Forbidden(format!("Tokens for {s} cannot be issued: web-service tokens are switched off."))
            }
            CoreError::HttpsRequired => AppError::Forbidden("This needs the site to be served over HTTPS.".into()),
            CoreError::NotForSiteAdmins => AppError::Forbidden("This is not available to site administrators.".into()),
            CoreError::TooSoon(minutes) => {
                AppError::BadRequest(format!("Asked too soon: wait {minutes} minutes between requests."))
            }
            CoreError::PrivateTokenMismatch => AppError::Forbidden("The private token does not match.".into()),
            CoreError::Db(e) => AppError::Db(e),
        }
    }
}

impl ResponseError for AppError {
    fn status_code(&self) -> StatusCode {
        match self {
            AppError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AppError::LoginRequired { .. } => StatusCode::SEE_OTHER,
            AppError::Forbidden(_) | AppError::StaleForm => StatusCode::FORBIDDEN,
            AppError::NotFound => StatusCode::NOT_FOUND,
            // No connection to be had: the database is away, and will be back.
            AppError::Db(DbError::Pool(_)) => StatusCode::SERVICE_UNAVAILABLE,
            AppError::Db(_) | AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let AppError::LoginRequired { wants, ended } = self {
            let mut query = Vec::new();
            if let Some(wants) = wants.as_deref().filter(|w| *w != "/" && w.starts_with('/')) {
                query.push(("wantsurl", wants.to_owned()));
            }
            if *ended {
                query.push(("ended", "1".to_owned()));
            }
            let location = match serde_urlencoded::to_string(&query) {
                Ok(q) if !q.is_empty() => format!("/login/index.php?{q}"),
                _ => "/login/index.php".to_owned(),
            };
            return HttpResponse::SeeOther().insert_header((header::LOCATION, location)).finish();
        }
        let status = self.status_code();
        let message = match self {
            AppError::Db(DbError::Pool(e)) => {
                tracing::warn!(error = %e, "no database connection for a page");
                "The site is temporarily unavailable. Nothing was changed; please try again in a minute.".to_owned()
            }
            // Details of server faults go to the log, not to the visitor.
            AppError::Db(_) | AppError::Internal(_) => {
                tracing::error!(error = %self, "request failed");
                "Something went wrong on our side. Nothing was changed; please try again.".to_owned()
            }
            other => other.to_string(),
        };
        let title = match status {
            StatusCode::BAD_REQUEST => "That did not work",
            StatusCode::FORBIDDEN => "Not allowed",
            StatusCode::NOT_FOUND => "Not found",
            StatusCode::SERVICE_UNAVAILABLE => "Temporarily unavailable",
            _ => "Error",
        };
        HttpResponse::build(status)
            .content_type("text/html; charset=utf-8")
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .insert_header(super::headers::CONTENT_SECURITY_POLICY)
            .body(error_page(title, &message))
    }
}

/// A minimal page that needs no template engine, so it renders even when everything else fails.
pub fn error_page(title: &str, message: &str) -> String {
    let (title, message) = (tera::escape_html(title), tera::escape_html(message));
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title><link rel=\"stylesheet\" href=\"/static/style.css\"></head>\
         <body><header class=\"top\"><a class=\"brand\" href=\"/\">userkeys</a></header>\
         <main class=\"narrow\"><h1>{title}</h1><p class=\"error\" role=\"alert\">{message}</p>\
         <p><a href=\"/\">Go to the start page</a></p></main></body></html>"
    )
}

//! Headers every page carries.

/// Pages load nothing but the site's own stylesheet, script and images, run no inline script,
/// and post forms only to the site. (Set on pages only: the web-service answers of the hot path need none.)
pub const CONTENT_SECURITY_POLICY: (&str, &str) = (
    "Content-Security-Policy",
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
);

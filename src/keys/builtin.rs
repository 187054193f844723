//! The core key types, registered at start like any plugin's.

use super::KeyType;

pub const WEB_SESSION: &str = "web_session";
pub const WEBSERVICE_TOKEN: &str = "webservice_token";
pub const PUSH_DEVICE: &str = "push_device";
pub const RSS: &str = "rss";
pub const CALENDAR_EXPORT: &str = "calendar_export";
pub const AUTOLOGIN: &str = "tool_mobile";
pub const QR_LOGIN: &str = "tool_mobile/qrlogin";
pub const PASSWORD_RESET: &str = "password_reset";

pub fn core_types() -> Vec<KeyType> {
    vec![
        KeyType::new(WEB_SESSION, "Web sessions", "Browsers signed in to your account."),
        KeyType::new(
            WEBSERVICE_TOKEN,
            "Web-service tokens",
            "The mobile app on each device, scripts and integrations using web services.",
        ),
        KeyType::new(PUSH_DEVICE, "Push notification devices", "Devices registered to receive notifications."),
        KeyType::new(RSS, "RSS feed keys", "Let feed readers fetch your RSS feeds without signing in."),
        KeyType::new(
            CALENDAR_EXPORT,
            "Calendar export keys",
            "Let calendar applications subscribe to your calendar without signing in.",
        ),
        KeyType::new(
            AUTOLOGIN,
            "Mobile auto-login keys",
            "Short-lived keys that sign the mobile app into the browser.",
        ),
        KeyType::new(QR_LOGIN, "QR login keys", "Short-lived keys behind a QR code that signs the mobile app in."),
        KeyType::new(PASSWORD_RESET, "Password reset links", "Pending links to reset your password."),
    ]
}

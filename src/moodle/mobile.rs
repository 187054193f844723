//! Moodle's tool_mobile: the site's public and signed-in configuration as the app reads it,
//! and the auto-login key that opens the browser signed in.

use super::call::Call;
use super::error::MoodleError;
use crate::config::Config;
use crate::core::AUTOLOGIN_MIN_MINUTES_BETWEEN;
use serde_json::{json, Value};

/// The Moodle version this site reports (4.5); clients gate features on it.
pub const MOODLE_VERSION: &str = "2024100700";
pub const MOODLE_RELEASE: &str = "4.5 (Build: 20241007) userkeys";

/// Features of the app that need functions this server does not have, switched off so the app
/// does not offer them (Moodle's `tool_mobile_disabledfeatures`).
const DISABLED_FEATURES: &str = "CoreMainMenuDelegate_CoreSiteHome,CoreMainMenuDelegate_CoreCoursesDashboard,\
CoreMainMenuDelegate_CoreCourses,CoreMainMenuDelegate_AddonMessages,CoreMainMenuDelegate_AddonNotifications,\
CoreMainMenuDelegate_AddonCalendar,CoreMainMenuDelegate_AddonBlog,CoreMainMenuDelegate_CoreTag,\
CoreUserDelegate_CoreGrades,CoreUserDelegate_AddonPrivateFiles,CoreUserDelegate_AddonBadges:account,\
CoreUserDelegate_AddonBlog:account,CoreUserDelegate_AddonCompetency,NoDelegate_CoreOffline,NoDelegate_GlobalSearch,\
CoreLoginEmailSignup,NoDelegate_ForgottenPassword";

/// What the app reads before anyone signs in.
pub fn public_config(config: &Config) -> Value {
    let root = config.site_root();
    json!({
        "wwwroot": root,
        "httpswwwroot": root,
        "sitename": config.site_name,
        "guestlogin": 0,
        "rememberusername": 2,
        "authloginviaemail": 0,
        "registerauth": "",
        "forgottenpasswordurl": "",
        "authinstructions": "",
        "authnoneenabled": 0,
        "enablewebservices": 1,
        "enablemobilewebservice": 1,
        "maintenanceenabled": 0,
        "maintenancemessage": "",
        "typeoflogin": config.type_of_login(),
        "launchurl": format!("{root}/admin/tool/mobile/launch.php"),
        "mobilecssurl": "",
        "tool_mobile_disabledfeatures": DISABLED_FEATURES,
        "country": "",
        "agedigitalconsentverification": false,
        "supportpage": "",
        "supportavailability": 0,
        "autolang": 1,
        "lang": "en",
        "langmenu": 0,
        "langlist": "",
        "locale": "en_AU.UTF-8",
        "tool_mobile_minimumversion": "",
        "tool_mobile_iosappid": "633359593",
        "tool_mobile_androidappid": "com.moodle.moodlemobile",
        "tool_mobile_setuplink": "https://download.moodle.org/mobile",
        "tool_mobile_qrcodetype": 2,
        "identityproviders": [],
        "tool_mfa_enabled": false,
        "enableloginrecaptcha": false,
        "enableforgotpasswordrecaptcha": false,
        "warnings": [],
        "showloginform": 1,
    })
}

/// tool_mobile_get_config: the settings the signed-in app reads, as Moodle's name/value list;
/// `section` narrows it to one of Moodle's sections.
pub async fn config(call: Call<'_>) -> Result<Value, MoodleError> {
    let section = call.params.text("section")?.unwrap_or("").trim().to_owned();
    let config = call.state.core.config();
    let sections: [(&str, Vec<(&str, Value)>); 4] = [
        (
            "frontpagesettings",
            vec![
                ("fullname", json!(config.site_name)),
                ("shortname", json!(config.site_name)),
                ("summary", json!("")),
                ("frontpage", json!("")),
                ("frontpageloggedin", json!("")),
                ("maxcategorydepth", json!(2)),
                ("frontpagecourselimit", json!(200)),
                ("numsections", json!(1)),
                ("newsitems", json!(3)),
                ("commentsperpage", json!(15)),
            ],
        ),
        (
            "sitepolicies",
            vec![("sitepolicy", json!("")), ("sitepolicyhandler", json!("")), ("disableuserimages", json!(0))],
        ),
        (
            "mobileapp",
            vec![
                ("tool_mobile_forcelogout", json!(0)),
                ("tool_mobile_customlangstrings", json!("")),
                ("tool_mobile_disabledfeatures", json!(DISABLED_FEATURES)),
                ("tool_mobile_custommenuitems", json!("")),
                ("tool_mobile_apppolicy", json!("")),
                ("tool_mobile_autologinmintimebetweenreq", json!(AUTOLOGIN_MIN_MINUTES_BETWEEN * 60)),
                ("tool_mobile_filetypeexclusionlist", json!("")),
            ],
        ),
        (
            "sitesettings",
            vec![
                ("sitename", json!(config.site_name)),
                ("calendartype", json!("gregorian")),
                ("allowstealth", json!(0)),
                ("searchbanner", json!("")),
                ("searchbannerenable", json!(0)),
                ("enabledashboard", json!(0)),
                ("customusermenuitems", json!("")),
                ("supportavailability", json!(0)),
            ],
        ),
    ];
    let chosen: Vec<Value> = sections
        .into_iter()
        .filter(|(name, _)| section.is_empty() || *name == section)
        .flat_map(|(_, settings)| settings)
        .map(|(name, value)| json!({"name": name, "value": value}))
        .collect();
    Ok(json!({"settings": chosen, "warnings": []}))
}

pub fn is_moodle_app(user_agent: &str) -> bool {
    user_agent.to_ascii_lowercase().contains("moodlemobile")
}

/// tool_mobile_get_autologin_key: a one-minute key, bound to the caller's address, that
/// autologin.php trades for a browser session. Asked for with the private token, in the body.
pub async fn autologin_key(call: Call<'_>) -> Result<Value, MoodleError> {
    if !is_moodle_app(&call.client.user_agent) {
        return Err(MoodleError::app_required());
    }
    // The private token must come in the body, never in a URL that logs keep.
    let private =
        call.params.text("privatetoken")?.filter(|p| !p.is_empty() && !call.params.came_in_query("privatetoken"));
    let key = call.state.core.autologin_key(call.token.key(), private, call.client).await?;
    Ok(json!({
        "key": key,
        "autologinurl": format!("{}/admin/tool/mobile/autologin.php", call.state.core.config().site_root()),
        "warnings": [],
    }))
}

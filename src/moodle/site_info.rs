//! `core_webservice_get_site_info`, the call the app makes most: Moodle's fields in Moodle's
//! order, assembled from pieces serialised once — per site, per service and per user — since
//! only the user and the service differ from one token to the next.

use super::auth::AuthenticatedToken;
use super::mobile::{MOODLE_RELEASE, MOODLE_VERSION};
use super::State;
use crate::config::Config;
use crate::core::{KeyOwner as TokenOwner, ServiceAccess};
use crate::domain::secret::{derive, ClearSecret};
use serde::Serialize;

#[derive(Serialize)]
struct NameVersion<'a> {
    name: &'a str,
    version: &'static str,
}

#[derive(Serialize)]
struct Feature {
    name: &'static str,
    value: i32,
}

const ADVANCED_FEATURES: [Feature; 12] = [
    Feature { name: "usecomments", value: 0 },
    Feature { name: "usetags", value: 0 },
    Feature { name: "enablenotes", value: 0 },
    Feature { name: "messaging", value: 0 },
    Feature { name: "enableblogs", value: 0 },
    Feature { name: "enablecompletion", value: 0 },
    Feature { name: "enablebadges", value: 0 },
    Feature { name: "messagingallusers", value: 0 },
    Feature { name: "enablecustomreports", value: 0 },
    Feature { name: "enableglobalsearch", value: 0 },
    Feature { name: "mnet_dispatcher_mode", value: 0 },
    Feature { name: "enablecompetencies", value: 0 },
];

/// The whole answer, field by field: the reference the pieces below must add up to.
#[cfg(test)]
#[derive(Serialize)]
struct SiteInfo<'a> {
    #[serde(flatten)]
    site_name: SiteName<'a>,
    #[serde(flatten)]
    user: UserPart<'a>,
    #[serde(flatten)]
    urls: SiteUrls<'a>,
    #[serde(flatten)]
    service: ServicePart<'a>,
    #[serde(flatten)]
    constants: Constants,
    userprivateaccesskey: &'a str,
    #[serde(flatten)]
    site_ids: SiteIds,
    #[serde(flatten)]
    admin: AdminPart,
}

#[derive(Serialize)]
struct SiteName<'a> {
    sitename: &'a str,
}

#[derive(Serialize)]
struct UserPart<'a> {
    username: &'a str,
    firstname: &'a str,
    lastname: &'a str,
    fullname: &'a str,
    lang: &'static str,
    userid: i64,
}

#[derive(Serialize)]
struct SiteUrls<'a> {
    siteurl: &'a str,
    userpictureurl: String,
}

#[derive(Serialize)]
struct ServicePart<'a> {
    functions: Vec<NameVersion<'a>>,
    downloadfiles: i32,
    uploadfiles: i32,
}

/// Moodle's types: version and release are strings.
#[derive(Serialize)]
struct Constants {
    release: &'static str,
    version: &'static str,
    mobilecssurl: &'static str,
    advancedfeatures: &'static [Feature],
    usercanmanageownfiles: bool,
    userquota: i64,
    usermaxuploadfilesize: i64,
    userhomepage: i64,
}

#[derive(Serialize)]
struct SiteIds {
    siteid: i64,
    sitecalendartype: &'static str,
    usercalendartype: &'static str,
}

const SITE_IDS: SiteIds = SiteIds { siteid: 1, sitecalendartype: "gregorian", usercalendartype: "gregorian" };

const CONSTANTS: Constants = Constants {
    release: MOODLE_RELEASE,
    version: MOODLE_VERSION,
    mobilecssurl: "",
    advancedfeatures: &ADVANCED_FEATURES,
    usercanmanageownfiles: true,
    userquota: 0,
    usermaxuploadfilesize: -1,
    userhomepage: 1,
};

#[derive(Serialize)]
struct AdminPart {
    userissiteadmin: bool,
    theme: &'static str,
    limitconcurrentlogins: i64,
    policyagreed: i64,
    usercanchangeconfig: bool,
    usercanviewconfig: bool,
}

fn admin_part(is_site_admin: bool) -> AdminPart {
    AdminPart {
        userissiteadmin: is_site_admin,
        theme: "boost",
        limitconcurrentlogins: 0,
        policyagreed: 1,
        usercanchangeconfig: is_site_admin,
        usercanviewconfig: is_site_admin,
    }
}

/// A struct's fields as JSON without the enclosing braces, to be joined with others.
fn fields(value: &impl Serialize) -> String {
    let json = serde_json::to_string(value).expect("plain structs serialise");
    json[1..json.len() - 1].to_owned()
}

fn user_part(user: &TokenOwner) -> UserPart<'_> {
    let full = user.fullname.trim();
    let (firstname, lastname) = full.rsplit_once(' ').unwrap_or((full, ""));
    UserPart { username: &user.username, firstname, lastname, fullname: &user.fullname, lang: "en", userid: user.id }
}

fn service_part(service: &ServiceAccess) -> ServicePart<'_> {
    ServicePart {
        functions: service.functions.iter().map(|n| NameVersion { name: n, version: MOODLE_VERSION }).collect(),
        downloadfiles: i32::from(service.service.download_files),
        uploadfiles: i32::from(service.service.upload_files),
    }
}

/// The pieces that are the same for every token of the site, serialised at start.
pub struct SitePieces {
    /// `{"sitename":…,`
    head: String,
    /// `,"siteurl":…,"userpictureurl":…,`
    urls: String,
    /// `,"release":…,"userhomepage":1,"userprivateaccesskey":"`
    constants: String,
    /// `","siteid":…,"usercalendartype":…,` then the admin flags and the closing brace.
    tail_admin: String,
    tail_user: String,
}

impl SitePieces {
    pub fn new(config: &Config) -> Self {
        Self::for_site(&config.site_name, &config.site_root())
    }

    fn for_site(sitename: &str, root: &str) -> Self {
        let ids = fields(&SITE_IDS);
        SitePieces {
            head: format!("{{{},", fields(&SiteName { sitename })),
            urls: format!(",{},", fields(&site_urls(root))),
            constants: format!(",{},\"userprivateaccesskey\":\"", fields(&CONSTANTS)),
            tail_admin: format!("\",{ids},{}}}", fields(&admin_part(true))),
            tail_user: format!("\",{ids},{}}}", fields(&admin_part(false))),
        }
    }

    /// The answer for this user and service; their pieces are serialised at first use and kept.
    /// `file_key` is hex, so it goes in without escaping.
    fn render(&self, user: &TokenOwner, service: &ServiceAccess, file_key: &str) -> String {
        let user_json = user.site_info.get_or_init(|| fields(&user_part(user)).into());
        let service_json = service.site_info.get_or_init(|| fields(&service_part(service)).into());
        let tail = if user.is_site_admin { &self.tail_admin } else { &self.tail_user };
        let pieces =
            [self.head.as_str(), user_json, self.urls.as_str(), service_json, &self.constants, file_key, tail.as_str()];
        let mut out = String::with_capacity(pieces.iter().map(|p| p.len()).sum());
        for piece in pieces {
            out.push_str(piece);
        }
        out
    }
}

fn site_urls(root: &str) -> SiteUrls<'_> {
    SiteUrls { siteurl: root, userpictureurl: format!("{root}/theme/image.php/boost/core/1/u/f1") }
}

/// The answer for this token.
pub fn render(state: &State, token: &AuthenticatedToken, wstoken: &str) -> String {
    state.site_info.render(&token.user(), &token.service(), &file_access_key(wstoken))
}

/// Moodle's `userprivateaccesskey` (the key the app puts in file URLs), derived from the token
/// so that it is never stored and ends with the token. This server serves no files, so it
/// opens nothing here.
pub fn file_access_key(wstoken: &str) -> String {
    derive("core_files", &ClearSecret::from_client(wstoken), 32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::models::Service; // building a service by hand, as only a test does

    fn reference(sitename: &str, root: &str, user: &TokenOwner, service: &ServiceAccess) -> String {
        serde_json::to_string(&SiteInfo {
            site_name: SiteName { sitename },
            user: user_part(user),
            urls: site_urls(root),
            service: service_part(service),
            constants: CONSTANTS,
            userprivateaccesskey: "0123abcd",
            site_ids: SITE_IDS,
            admin: admin_part(user.is_site_admin),
        })
        .unwrap()
    }

    #[test]
    fn pieces_add_up_to_the_whole_answer_in_moodles_order() {
        let service = ServiceAccess {
            service: Service {
                id: 1,
                shortname: "moodle_mobile_app".into(),
                name: "Moodle mobile web service".into(),
                enabled: true,
                download_files: true,
                upload_files: false,
                created_at: chrono::NaiveDateTime::default(),
            },
            functions: vec!["core_webservice_get_site_info".into(), "tool_mobile_get_autologin_key".into()],
            site_info: Default::default(),
            narrowed: false,
        };
        for admin in [false, true] {
            let user = TokenOwner {
                id: 42,
                username: "anna\"q".into(),
                fullname: "Anna Maria Quist".into(),
                is_site_admin: admin,
                suspended: false,
                site_info: Default::default(),
                cache_mark: Default::default(),
            };
            let (sitename, root) = ("Campus <\"Süd\">", "https://moodle.example.org");
            let assembled = SitePieces::for_site(sitename, root).render(&user, &service, "0123abcd");
            assert_eq!(assembled, reference(sitename, root, &user, &service));
            let parsed: serde_json::Value = serde_json::from_str(&assembled).unwrap();
            let keys: Vec<&str> = parsed.as_object().unwrap().keys().map(String::as_str).collect();
            assert_eq!(
                keys,
                [
                    "sitename",
                    "username",
                    "firstname",
                    "lastname",
                    "fullname",
                    "lang",
                    "userid",
                    "siteurl",
                    "userpictureurl",
                    "functions",
                    "downloadfiles",
                    "uploadfiles",
                    "release",
                    "version",
                    "mobilecssurl",
                    "advancedfeatures",
                    "usercanmanageownfiles",
                    "userquota",
                    "usermaxuploadfilesize",
                    "userhomepage",
                    "userprivateaccesskey",
                    "siteid",
                    "sitecalendartype",
                    "usercalendartype",
                    "userissiteadmin",
                    "theme",
                    "limitconcurrentlogins",
                    "policyagreed",
                    "usercanchangeconfig",
                    "usercanviewconfig",
                ]
            );
            assert_eq!(parsed["lastname"], "Quist");
            assert_eq!(parsed["userissiteadmin"], admin);
            assert_eq!(parsed["functions"][1]["name"], "tool_mobile_get_autologin_key");
        }
    }
}

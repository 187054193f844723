//! Turns an HTTP User-Agent header into the short name a person expects to
//! read on the "your keys" page, e.g. "Chrome 132 · Windows" or "curl 8.5".

use woothee::parser::{Parser, WootheeResult};
use Version::{Major, MajorMinor, Omit};

/// Only this many chars are looked at: real agents are far shorter, and it
/// bounds the work spent on hostile headers.
const MAX_CHARS: usize = 512;
/// Longest text taken verbatim from the header or a device field.
const MAX_PART: usize = 64;
const UNKNOWN_CLIENT: &str = "Unknown client";
const SEP: &str = " · ";

#[derive(Clone, Copy)]
enum Version {
    /// The number after the token means nothing to a reader (or is absent).
    Omit,
    Major,
    MajorMinor,
}

/// A client woothee does not know (or misnames, e.g. the Moodle app is a "Webview").
struct Product {
    /// Product token that identifies the client (any case); the version follows it after "/" or " ".
    token: &'static str,
    /// Also required somewhere in the agent, for tokens shared by several products.
    with: Option<&'static str>,
    name: &'static str,
    version: Version,
    /// Whether to append the platform; off when the name already says it.
    os: bool,
    /// An HTTP library or tool: it names the agent only when it is the agent's first product,
    /// since an app built on it ("moodle-dl/2.3.13 python-requests/2.31") names itself first.
    lib: bool,
}

const fn p(token: &'static str, name: &'static str, version: Version, os: bool) -> Product {
    Product { token, with: None, name, version, os, lib: false }
}

/// A library or tool, named only when it is the agent's first product.
const fn lib(token: &'static str, name: &'static str, version: Version) -> Product {
    Product { token, with: None, name, version, os: false, lib: true }
}

impl Product {
    const fn with(self, also: &'static str) -> Self {
        Product { with: Some(also), ..self }
    }
}

#[rustfmt::skip]
const PRODUCTS: &[Product] = &[
    p("MoodleMobile", "Moodle app", MajorMinor, true),
    // Calendar and mail clients polling an exported calendar.
    p("Google-Calendar-Importer", "Google Calendar", Omit, false),
    p("Microsoft Outlook", "Outlook desktop", Omit, true),
    p("MacOutlook", "Outlook for Mac", MajorMinor, true),
    p("Outlook-iOS", "Outlook for iOS", Omit, false),
    p("dataaccessd", "Apple Calendar", Omit, true),
    p("CalendarAgent", "Apple Calendar", Omit, true),
    p("Thunderbird", "Thunderbird", Major, true),
    p("Icedove", "Icedove", Major, true),
    p("Nextcloud Webcal Service", "Nextcloud Calendar (subscription)", Omit, false),
    // Feed readers fetching on a server for many people: their version means nothing to a reader.
    p("NextCloud-News", "Nextcloud News", Omit, false),
    p("Feedly", "Feedly", Omit, false),
    p("MetaFeedly", "Feedly", Omit, false),
    p("Inoreader", "Inoreader", Omit, false),
    p("Feedbin", "Feedbin", Omit, false),
    p("NewsBlur Feed Fetcher", "NewsBlur", Omit, false),
    p("NewsBlur Page Fetcher", "NewsBlur", Omit, false),
    p("Miniflux", "Miniflux", Omit, false),
    p("Tiny Tiny RSS", "Tiny Tiny RSS", Omit, false),
    p("FreshRSS", "FreshRSS", Omit, false),
    p("BazQux", "BazQux", Omit, false),
    p("theoldreader", "The Old Reader", Omit, false),
    p("Feed Wrangler", "Feed Wrangler", Omit, false),
    p("FeedBurner", "FeedBurner", Omit, false),
    p("CommaFeed", "CommaFeed", Omit, false),
    p("Netvibes", "Netvibes", Omit, false),
    p("Feedfetcher-Google", "Google Feedfetcher", Omit, false),
    p("NetNewsWire", "NetNewsWire", MajorMinor, true),
    p("Apple-PubSub", "Apple PubSub", Omit, false),
    // Link previews and fediverse servers fetching a page on someone's behalf.
    p("facebookexternalhit", "Facebook link preview", Omit, false),
    p("Slackbot", "Slackbot", Omit, false),
    p("Pingdom.com_bot", "Pingdom", Omit, false),
    p("Mastodon", "Mastodon", Omit, false),
    // Sync clients; both desktop clients still call themselves "mirall".
    p("mirall", "Nextcloud desktop", MajorMinor, true).with("Nextcloud"),
    p("mirall", "ownCloud desktop", MajorMinor, true).with("ownCloud"),
    p("Nextcloud-android", "Nextcloud Android app", MajorMinor, false),
    p("Nextcloud-iOS", "Nextcloud iOS app", MajorMinor, false),
    p("DAVdroid", "DAVx⁵ (DAVdroid)", MajorMinor, true),
    p("DAVx5", "DAVx⁵", MajorMinor, true),
    // HTTP libraries and API tools: scripts calling web services with a token.
    lib("curl", "curl", MajorMinor),
    lib("Wget", "Wget", MajorMinor),
    lib("python-requests", "Python requests", MajorMinor),
    // Go's "/1.1" or "/2.0" is the HTTP protocol version, not Go's.
    lib("Go-http-client", "Go HTTP client", Omit),
    lib("okhttp", "OkHttp", MajorMinor),
    lib("axios", "axios", MajorMinor),
    lib("PostmanRuntime", "Postman", Omit),
    lib("GuzzleHttp", "Guzzle", MajorMinor),
    lib("Guzzle", "Guzzle", MajorMinor),
];

/// Tokens of a browser's agent that say nothing about which app sent it.
#[rustfmt::skip]
const BROWSER_PARTS: &[&str] = &[
    "mozilla", "applewebkit", "chrome", "chromium", "safari", "mobile safari", "version", "mobile", "gecko",
    "firefox", "electron", "edg", "edge", "edga", "edgios", "opr", "opera", "crios", "fxios", "samsungbrowser",
    "yabrowser", "vivaldi", "brave", "trident", "like chrome", "headlesschrome", "lightning", "ucbrowser",
];

/// Language runtimes and bundled libraries ("Python/3.5 aiohttp/1.0.5", "libcurl/7.79 r-curl/4.3"):
/// the agent's name is the product after them, if there is one.
fn is_runtime(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    ["python", "cpython", "php", "ruby", "java", "node", "go", "dart", "perl"].contains(&n.as_str())
        || n.starts_with("lib")
}

/// The readable name of the client that sent `user_agent`.
pub fn describe_user_agent(user_agent: &str) -> String {
    let ua = match user_agent.char_indices().nth(MAX_CHARS) {
        Some((end, _)) => &user_agent[..end],
        None => user_agent,
    }
    .trim();
    if ua.is_empty() {
        return UNKNOWN_CLIENT.to_string();
    }
    let parsed = Parser::new().parse(ua);
    let parsed = parsed.as_ref();
    let tokens = products(ua);
    let named = || tokens.iter().filter(|t| !t.name.eq_ignore_ascii_case("mozilla"));
    // The agent's first product, after any runtime or bundled library it starts with.
    let browser_part = |t: &Token| BROWSER_PARTS.contains(&t.name.to_ascii_lowercase().as_str());
    let lead = named().find(|t| !is_runtime(&t.name) && !browser_part(t)).or_else(|| named().next());

    let known = |pr: &&Product| {
        let found = find_token(ua, pr.token).is_some() && pr.with.is_none_or(|w| ua.contains(w));
        found && (!pr.lib || lead.is_some_and(|t| starts_with_ci(&t.name, pr.token)))
    };
    if let Some(product) = PRODUCTS.iter().find(known) {
        let version =
            find_token(ua, product.token).and_then(|at| version_at(&ua[at + product.token.len()..], product.version));
        let os = product.os.then(|| platform(ua, parsed)).flatten();
        return compose(product.name, version, os);
    }

    if let Some(r) = parsed {
        // "misc crawler" is woothee's guess from a "bot" in the name: the token says more.
        if r.category == "crawler" && !matches!(r.name, "UNKNOWN" | "misc crawler") {
            // The agent's own token where woothee's name merely contains it ("Ahref AhrefsBot").
            return match lead.filter(|t| r.name.contains(t.name.as_str()) && !r.name.eq_ignore_ascii_case(&t.name)) {
                Some(t) => clean(&t.name),
                None => capitalize(r.name),
            };
        }
    }
    // A service fetching for many people (a crawler, a hosted feed reader): its name alone.
    if let Some(t) = lead.filter(|t| is_service(ua, &t.name)) {
        return clean(&t.name);
    }

    if let Some(r) = parsed {
        let device = ["pc", "smartphone", "mobilephone", "appliance"];
        if device.contains(&r.category) && r.name != "UNKNOWN" {
            // An app built on a browser engine names itself beside the browser's own tokens.
            let app = tokens.iter().find(|t| !browser_part(t));
            if let Some(app) = app {
                return compose(&clean(&app.name), version_at(&app.version, MajorMinor), platform(ua, parsed));
            }
            // Browsers ship a major every few weeks; Safari's minor is a real release.
            let (name, kind) = match r.name {
                "Webview" => ("In-app browser", Omit),
                "SamsungBrowser" => ("Samsung Internet", Major),
                "Safari" => ("Safari", MajorMinor),
                other => (other, Major),
            };
            return compose(name, version_at(r.version, kind), platform(ua, parsed));
        }
    }
    // Anyone else is shown by its own first product, even "Mozilla" if that is all it says.
    match lead.or_else(|| tokens.first()) {
        Some(t) => compose(&clean(&t.name), version_at(&t.version, MajorMinor), platform(ua, parsed)),
        None => UNKNOWN_CLIENT.to_string(),
    }
}

/// A product the agent names: "Tiny Tiny RSS/1.10" is ("Tiny Tiny RSS", "1.10"), "Airmail 1.4" is
/// ("Airmail", "1.4").
struct Token {
    name: String,
    version: String,
}

/// The products an agent names, in order: those outside comments, else the first product
/// inside a "(compatible; Name/1.0; +http://…)" comment.
fn products(ua: &str) -> Vec<Token> {
    let outside = strip_comments(ua);
    let mut tokens = Vec::new();
    // Words without a "/" belong to the name that follows ("eM Client/8.2", "Mobile Safari/537").
    let mut pending: Vec<&str> = Vec::new();
    let mut push = |pending: &mut Vec<&str>, version: &str| {
        if !pending.is_empty() {
            tokens.push(Token { name: pending.join(" "), version: version.to_string() });
            pending.clear();
        }
    };
    for word in outside.split_whitespace() {
        if word.contains("://") || word.starts_with('+') || word == "-" {
            // A URL or "- 9 subscribers" ends the products.
            push(&mut pending, "");
            break;
        } else if let Some((name, version)) = word.split_once('/') {
            pending.push(name);
            push(&mut pending, version);
        } else if word.starts_with(|c: char| c.is_ascii_digit()) || is_v_number(word) {
            // "Airmail 1.4 rv:238", "NewsBlur iPhone App v3.6": a bare number ends a name.
            push(&mut pending, word.trim_start_matches('v'));
        } else if word.contains(':') {
            push(&mut pending, "");
        } else {
            pending.push(word.trim_end_matches([';', ',']));
            if word.ends_with([';', ',']) {
                push(&mut pending, "");
            }
        }
    }
    push(&mut pending, "");
    tokens.retain(|t| is_name(&t.name));
    for t in &mut tokens {
        // "Better Uptime Bot Mozilla/5.0": a product written before a browser's own prefix.
        if let Some(name) = t.name.strip_suffix(" Mozilla") {
            t.name = name.to_string();
            t.version.clear();
        }
    }
    if tokens.iter().all(|t| t.name.eq_ignore_ascii_case("mozilla")) {
        tokens.extend(compatible_product(ua));
    }
    tokens
}

/// The product named in a comment: "(compatible; SomeBot/1.0; +http://…)".
fn compatible_product(ua: &str) -> Option<Token> {
    let inner = &ua[ua.find('(')? + 1..];
    let inner = &inner[..inner.find(')').unwrap_or(inner.len())];
    inner
        .split(';')
        .map(str::trim)
        .filter(|part| part.len() > 1 && !part.eq_ignore_ascii_case("compatible"))
        .filter(|part| !part.contains("://") && !part.starts_with('+') && !part.contains('@'))
        .filter(|part| comment_platform(part).is_none() && !part.starts_with("MSIE"))
        .map(|part| {
            let (name, version) = part.split_once('/').unwrap_or((part, ""));
            Token { name: name.trim().to_string(), version: version.to_string() }
        })
        .find(|t| is_name(&t.name))
}

fn is_v_number(word: &str) -> bool {
    word.strip_prefix('v').is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
}

fn is_name(name: &str) -> bool {
    name.chars().nth(1).is_some()
        && name.starts_with(|c: char| c.is_alphabetic())
        && name.chars().all(|c| c.is_alphanumeric() || " -_.!'+~".contains(c))
}

/// Whether the agent is a service fetching for others: it says "bot", "spider" or "crawler"
/// in its name, counts its subscribers, or points to a page about itself ("+http://…").
fn is_service(ua: &str, name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    let l = ua.to_ascii_lowercase();
    // "bot" ends a word of the name: "MJ12bot", "Googlebot-Image", "Uptime Bot", but not "Boto3".
    let says =
        |w: &str| n.match_indices(w).any(|(at, _)| !n[at + w.len()..].starts_with(|c: char| c.is_alphanumeric()));
    ["bot", "spider", "crawler"].into_iter().any(says) || l.contains("subscribers") || l.contains("+http")
}

fn starts_with_ci(text: &str, prefix: &str) -> bool {
    text.len() >= prefix.len() && text.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

/// The platform a non-browser agent states in a comment: "(Linux; …)", "(Android 12; …)",
/// "(Macintosh; Mac OS X 14.1; en)", "(http://…; Microsoft Windows XP)".
fn comment_platform(part: &str) -> Option<String> {
    let part = part.trim();
    let l = part.to_ascii_lowercase();
    let number_after = |key: &str| {
        let at = l.find(key)? + key.len();
        let rest = part[at..].trim_start();
        let rest = rest.strip_prefix("Version ").unwrap_or(rest);
        Some(leading_number(rest).trim_end_matches('.').to_string()).filter(|n| !n.is_empty())
    };
    let with = |name: &str, v: Option<String>| Some(with_version(name, &v.unwrap_or_default()));
    if l.contains("android") {
        return with("Android", number_after("android"));
    }
    if l.contains("iphone os") || l.starts_with("ios") {
        let v = number_after("iphone os").or_else(|| number_after("ios"));
        return with(if l.contains("ipad") { "iPadOS" } else { "iOS" }, v);
    }
    if l.contains("ipad") {
        return Some("iPadOS".into());
    }
    if l.contains("mac os x") || l.contains("macintosh") || l.starts_with("macos") {
        return with("macOS", number_after("mac os x"));
    }
    if ["windows", "winnt", "win32", "win64"].iter().any(|w| l.contains(w)) {
        return Some("Windows".into());
    }
    if l.contains("linux") || l.starts_with("x11") {
        return Some("Linux".into());
    }
    None
}

fn compose(name: &str, version: Option<String>, platform: Option<String>) -> String {
    let name = with_version(name, &version.unwrap_or_default());
    platform.map_or_else(|| name.clone(), |os| format!("{name}{SEP}{os}"))
}

fn with_version(name: &str, version: &str) -> String {
    match version {
        "" => name.to_string(),
        v => format!("{name} {v}"),
    }
}

/// Byte offset of `token` where it starts a word, so "curl" does not match "libcurl".
fn find_token(ua: &str, token: &str) -> Option<usize> {
    let starts_word = |at: usize| ua[..at].ends_with(|c: char| c.is_whitespace() || "(;,".contains(c));
    // Lower-casing ASCII keeps every byte offset, so offsets into `lower` are offsets into `ua`.
    let (lower, token) = (ua.to_ascii_lowercase(), token.to_ascii_lowercase());
    lower.match_indices(&token).map(|(at, _)| at).find(|&at| at == 0 || starts_word(at))
}

/// The "1.2.3" at the start of "1.2.3stable-Win64".
fn leading_number(text: &str) -> &str {
    let end = text.find(|c: char| !c.is_ascii_digit() && c != '.');
    // All of it is ASCII, so capping by bytes keeps a char boundary.
    &text[..end.unwrap_or(text.len()).min(MAX_PART)]
}

/// Reads a dotted version right after a product token ("/3.3.6stable", " 5.0.0 (50003)").
fn version_at(text: &str, kind: Version) -> Option<String> {
    let keep = match kind {
        Omit => return None,
        Major => 1,
        MajorMinor => 2,
    };
    let text = text.strip_prefix(['/', ' ']).unwrap_or(text);
    let text = text.strip_prefix('v').unwrap_or(text);
    // "Spotify/120800923": a long build number is no version a person knows.
    if leading_number(text).len() > 4 && !leading_number(text).contains('.') {
        return None;
    }
    let parts: Vec<&str> = leading_number(text).split('.').take_while(|s| !s.is_empty()).take(keep).collect();
    (!parts.is_empty()).then(|| parts.join("."))
}

/// The operating system, as precisely as the agent honestly tells it.
fn platform(ua: &str, parsed: Option<&WootheeResult>) -> Option<String> {
    // Non-browser clients name the OS as a product token of their own.
    let own =
        [("iOS/", "iOS"), ("Mac+OS+X/", "macOS"), ("macOS/", "macOS"), ("Mac OS X/", "macOS"), ("Android/", "Android")];
    for (token, name) in own {
        if let Some(at) = find_token(ua, token) {
            return Some(with_version(name, leading_number(&ua[at + token.len()..])));
        }
    }
    // Nextcloud/ownCloud desktop say "windows-10.0.19043"; Windows 11 is 10.0 from build 22000.
    if let Some(at) = find_token(ua, "windows-") {
        let number = leading_number(&ua[at + "windows-".len()..]);
        let v: Vec<u32> = number.split('.').map_while(|s| s.parse().ok()).collect();
        return Some(match v.as_slice() {
            [10, _, build, ..] if *build >= 22000 => "Windows 11".into(),
            [10, ..] => "Windows 10".into(),
            _ => "Windows".into(),
        });
    }
    // PowerShell says "Microsoft Windows 10.0.19045".
    if let Some(at) = ua.find("Microsoft Windows ") {
        let number = leading_number(&ua[at + "Microsoft Windows ".len()..]);
        let v: Vec<u32> = number.split('.').map_while(|s| s.parse().ok()).collect();
        match v.as_slice() {
            [10, _, build, ..] if *build >= 22000 => return Some("Windows 11".into()),
            [10, ..] => return Some("Windows 10".into()),
            _ => {}
        }
    }
    let stated = || {
        let open = ua.find('(')?;
        let inner = &ua[open + 1..];
        comment_platform(&inner[..inner.find(')').unwrap_or(inner.len())])
    };
    // An agent that is no browser is believed only on what it states itself.
    let Some(r) = parsed.filter(|r| r.os != "UNKNOWN" && starts_with_ci(ua, "Mozilla/")) else {
        return stated();
    };
    let version = match clean(&r.os_version) {
        v if v == "UNKNOWN" => String::new(),
        v => v,
    };
    Some(match r.os {
        "UNKNOWN" => return None,
        "iPhone" | "iPod" | "iOS" => with_version("iOS", &version),
        "iPad" => with_version("iPadOS", &version),
        // iPad apps send a desktop Mac agent; the "Mobile/" build token gives the iPad away.
        "Mac OSX" if ua.contains("Mobile/") => "iPad".into(),
        // Browsers freeze macOS at 10.15 and Windows 10/11 at NT 10.0: the number would lie.
        "Mac OSX" => "macOS".into(),
        "Windows 10" | "Windows UNKNOWN Ver" => "Windows".into(),
        // Chrome's reduced agent always says "Android 10; K" whatever the real version.
        "Android" if ua.contains("; K)") => "Android".into(),
        "Android" => with_version("Android", &version),
        other => clean(other),
    })
}

/// Drops parenthesised comments, which hold platform details rather than products.
fn strip_comments(ua: &str) -> String {
    let mut depth = 0usize;
    ua.chars()
        .filter(|&c| {
            match c {
                '(' => depth += 1,
                ')' => depth = depth.saturating_sub(1),
                _ => return depth == 0,
            }
            false
        })
        .collect()
}

/// Trims, drops control chars and bounds a piece of client-supplied text.
fn clean(s: &str) -> String {
    s.trim().chars().filter(|c| !c.is_control()).take(MAX_PART).collect::<String>().trim().to_string()
}

fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    chars.next().map_or_else(String::new, |c| c.to_uppercase().chain(chars).collect())
}

/// What a page shows for a device the Moodle app registered (Moodle's `user_devices` fields).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceTitle {
    /// The name the device was given ("Alice's Pixel"), when the app sent one besides a model.
    pub name: Option<String>,
    /// The model as people know it ("iPhone 14 Pro Max" for "iPhone15,3"), else the code sent.
    pub model: Option<String>,
    /// One line with everything: "Alice's Pixel (Pixel 8) · Android 15 · Moodle app 4.4".
    pub summary: String,
}

/// Makers the app sends as the device's `name` (it sends the manufacturer there): not a name
/// anyone gave the device.
const MAKERS: &[&str] = &[
    "apple",
    "samsung",
    "google",
    "xiaomi",
    "huawei",
    "honor",
    "oneplus",
    "motorola",
    "oppo",
    "vivo",
    "realme",
    "sony",
    "lge",
    "lg",
    "nokia",
    "hmd global",
    "zte",
    "lenovo",
    "asus",
    "fairphone",
    "nothing",
    "tcl",
    "amazon",
];

/// The device's given name, its model as people know it, and a one-line summary. `None` when
/// the registration says nothing at all.
pub fn device_title(
    name: Option<&str>,
    model: Option<&str>,
    platform: Option<&str>,
    os_version: Option<&str>,
    app_version: Option<&str>,
) -> Option<DeviceTitle> {
    let field = |v: Option<&str>| v.map(clean).filter(|s| !s.is_empty());
    let model = field(model).map(|m| crate::domain::device_models::marketing_name(&m).map_or(m, str::to_string));
    let name = field(name);
    let maker = name.as_ref().is_some_and(|n| MAKERS.contains(&n.to_lowercase().as_str()));
    let given = name.clone().filter(|n| !maker && model.as_ref().is_none_or(|m| !m.eq_ignore_ascii_case(n)));
    let device = match (&given, &model) {
        (Some(n), Some(m)) => Some(format!("{n} ({m})")),
        (None, Some(m)) => Some(m.clone()),
        // Only a maker or a name: still better than nothing.
        (_, None) => name,
    };
    // The app sends lower-case platform ids such as "android" or "ios-fcm".
    let os = field(platform).map(|p| match p.to_ascii_lowercase() {
        l if l.starts_with("android") => "Android".to_string(),
        l if l.starts_with("ios") => "iOS".to_string(),
        _ => p,
    });
    let os = match (os, field(os_version)) {
        (Some(os), Some(v)) => Some(format!("{os} {v}")),
        (os, _) => os,
    };
    let app = field(app_version).map(|v| format!("Moodle app {}", version_at(&v, MajorMinor).unwrap_or(v)));
    let parts: Vec<String> = [device, os, app].into_iter().flatten().collect();
    (!parts.is_empty()).then(|| DeviceTitle { name: given, model, summary: parts.join(SEP) })
}

/// The one-line name of a device registered by the Moodle app: [`device_title`]'s summary.
pub fn describe_device(
    name: Option<&str>,
    model: Option<&str>,
    platform: Option<&str>,
    os_version: Option<&str>,
    app_version: Option<&str>,
) -> Option<String> {
    device_title(name, model, platform, os_version, app_version).map(|t| t.summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURE: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/user-agents.tsv"));
    const HOLDOUT: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/user-agents-holdout.tsv"));

    /// Each row's agent, wanted name and what the namer says, for a fixture file.
    fn run(fixture: &str) -> Vec<(String, String, String)> {
        fixture
            .lines()
            .filter(|line| !line.trim().is_empty() && !line.starts_with('#'))
            .skip(1)
            .map(|line| {
                let mut cols = line.split('\t');
                let (ua, want) = (cols.next().unwrap_or(""), cols.next().unwrap_or(""));
                (ua.to_string(), want.to_string(), describe_user_agent(ua))
            })
            .collect()
    }

    fn report(rows: &[(String, String, String)]) -> Vec<String> {
        rows.iter()
            .filter(|(_, want, got)| want != got)
            .map(|(ua, want, got)| format!("{ua:?}\n  want {want:?}\n  got  {got:?}"))
            .collect()
    }

    #[test]
    fn every_fixture_row_gets_its_readable_name() {
        let rows = run(FIXTURE);
        assert!(rows.len() >= 250, "the fixture holds {} agents", rows.len());
        let mismatches = report(&rows);
        assert!(mismatches.is_empty(), "{} mismatches:\n{}", mismatches.len(), mismatches.join("\n"));
    }

    /// Agents kept apart from the rules' development: the score is printed, not required
    /// (`cargo test --lib held_out -- --nocapture`).
    #[test]
    fn held_out_agents_score() {
        let rows = run(HOLDOUT);
        let misses = report(&rows);
        let named = rows.len() - misses.len();
        println!(
            "held out: {named} of {} named as expected ({:.0}%)",
            rows.len(),
            100.0 * named as f64 / rows.len() as f64
        );
        println!("{}", misses.join("\n"));
        assert!(rows.len() >= 50);
    }

    fn check(cases: &[(&str, &str)]) {
        for (ua, want) in cases {
            assert_eq!(describe_user_agent(ua), *want, "for {ua:?}");
        }
    }

    #[test]
    fn unknown_agents_show_their_product_token() {
        check(&[
            ("SomeTool/2.1 (x)", "SomeTool 2.1"),
            ("Frobnicator", "Frobnicator"),
            ("Mozilla/5.0 (compatible) Fetcher/3.4.5", "Fetcher 3.4"),
            ("Mozilla/5.0 (compatible; YandexBot/3.0; +http://y.co)", "YandexBot"),
            ("moodle-dl/2.3.13 python-requests/2.31", "moodle-dl 2.3"),
            ("Python/3.5 aiohttp/1.0.5", "aiohttp 1.0"),
            ("PHP/8.2 libcurl/8.1", "PHP 8.2"),
            ("macOS/14.2 (23C64) CalendarAgent/1002", "Apple Calendar · macOS 14.2"),
        ]);
    }

    #[test]
    fn empty_agent_is_unknown_client() {
        check(&[("", "Unknown client"), (" \t\n ", "Unknown client"), ("()", "Unknown client")]);
    }

    #[test]
    fn garbage_and_huge_input_do_not_panic() {
        for ua in "((((|/|é/ü|MoodleMobile |curl/|windows-|iOS/|\u{0}/\u{7f}".split('|') {
            assert!(!describe_user_agent(ua).is_empty(), "for {ua:?}");
        }
        assert_eq!(describe_user_agent(&"Ж".repeat(100_000)).chars().count(), MAX_PART);
        let chrome = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 \
                      (KHTML, like Gecko) Chrome/132.0.0.0 Safari/537.36";
        let padded = format!("{chrome} {}", "x/1 ".repeat(100_000));
        assert_eq!(describe_user_agent(&padded), "Chrome 132 · Windows");
    }

    #[test]
    fn describes_moodle_app_devices() {
        let (model, os) = (Some("Pixel 8"), Some("Android"));
        let d = describe_device(None, model, os, Some("15"), Some("4.4.0"));
        assert_eq!(d.as_deref(), Some("Pixel 8 · Android 15 · Moodle app 4.4"));
        let d = describe_device(Some(" Apple "), None, Some("ios-fcm"), None, None);
        assert_eq!(d.as_deref(), Some("Apple · iOS"));
        assert_eq!(describe_device(None, Some("  "), None, None, None), None);
        let long = "m".repeat(500);
        let d = describe_device(None, Some(&long), None, None, Some("4.5"));
        assert_eq!(d, Some(format!("{} · Moodle app 4.5", "m".repeat(64))));
    }

    #[test]
    fn device_models_get_their_marketing_name() {
        let d = describe_device(Some("Apple"), Some("iPhone15,3"), Some("ios-fcm"), Some("17.5"), Some("4.4.0"));
        assert_eq!(d.as_deref(), Some("iPhone 14 Pro Max · iOS 17.5 · Moodle app 4.4"));
        let t = device_title(Some("samsung"), Some("SM-S911B"), Some("android-fcm"), Some("14"), None).unwrap();
        assert_eq!((t.name, t.model.as_deref()), (None, Some("Galaxy S23")));
        // A code the table does not hold is shown as sent.
        let t = device_title(None, Some("XQ-DQ72"), None, None, None).unwrap();
        assert_eq!(t.model.as_deref(), Some("XQ-DQ72"));
    }

    #[test]
    fn a_name_given_to_the_device_is_shown_with_its_model() {
        let t =
            device_title(Some("Alice's Pixel"), Some("Pixel 8"), Some("android"), Some("15"), Some("4.4.0")).unwrap();
        assert_eq!(t.name.as_deref(), Some("Alice's Pixel"));
        assert_eq!(t.model.as_deref(), Some("Pixel 8"));
        assert_eq!(t.summary, "Alice's Pixel (Pixel 8) · Android 15 · Moodle app 4.4");
        // A name that only repeats the model, or is the maker, is no given name.
        let t = device_title(Some("pixel 8"), Some("Pixel 8"), None, None, None).unwrap();
        assert_eq!((t.name, t.summary.as_str()), (None, "Pixel 8"));
        let t = device_title(Some("Google"), None, Some("android"), None, None).unwrap();
        assert_eq!((t.name, t.model, t.summary.as_str()), (None, None, "Google · Android"));
        assert_eq!(device_title(Some(" "), None, None, None, None), None);
    }
}

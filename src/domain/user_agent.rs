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
    /// Product token that identifies the client; the version follows it after "/" or " ".
    token: &'static str,
    /// Also required somewhere in the agent, for tokens shared by several products.
    with: Option<&'static str>,
    name: &'static str,
    version: Version,
    /// Whether to append the platform; off when the name already says it.
    os: bool,
}

const fn p(token: &'static str, name: &'static str, version: Version, os: bool) -> Product {
    Product { token, with: None, name, version, os }
}

impl Product {
    const fn with(self, also: &'static str) -> Self {
        Product { with: Some(also), ..self }
    }
}

#[rustfmt::skip]
const PRODUCTS: &[Product] = &[
    p("MoodleMobile", "Moodle app", MajorMinor, true),
    // Calendar and feed readers polling an exported calendar or feed URL.
    p("Google-Calendar-Importer", "Google Calendar", Omit, false),
    p("Microsoft Outlook", "Outlook desktop", Omit, true),
    p("dataaccessd", "Apple Calendar", Omit, true),
    p("CalendarAgent", "Apple Calendar", Omit, true),
    p("Thunderbird", "Thunderbird", Major, true),
    p("Nextcloud Webcal Service", "Nextcloud Calendar (subscription)", Omit, false),
    p("NextCloud-News", "Nextcloud News", Omit, false),
    p("Feedly", "Feedly", Omit, false),
    p("NetNewsWire", "NetNewsWire", Omit, false),
    // Sync clients; both desktop clients still call themselves "mirall".
    p("mirall", "Nextcloud desktop", MajorMinor, true).with("Nextcloud"),
    p("mirall", "ownCloud desktop", MajorMinor, true).with("ownCloud"),
    p("Nextcloud-android", "Nextcloud Android app", MajorMinor, false),
    p("Nextcloud-iOS", "Nextcloud iOS app", MajorMinor, false),
    p("DAVdroid", "DAVx⁵ (DAVdroid)", MajorMinor, true),
    p("DAVx5", "DAVx⁵", MajorMinor, true),
    // HTTP libraries and API tools: scripts calling web services with a token.
    p("curl", "curl", MajorMinor, false),
    p("python-requests", "Python requests", MajorMinor, false),
    // Go's "/1.1" or "/2.0" is the HTTP protocol version, not Go's.
    p("Go-http-client", "Go HTTP client", Omit, false),
    p("okhttp", "OkHttp", MajorMinor, false),
    p("axios", "axios", MajorMinor, false),
    p("PostmanRuntime", "Postman", Omit, false),
];

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

    if let Some(product) =
        PRODUCTS.iter().find(|pr| find_token(ua, pr.token).is_some() && pr.with.is_none_or(|w| ua.contains(w)))
    {
        let version =
            find_token(ua, product.token).and_then(|at| version_at(&ua[at + product.token.len()..], product.version));
        let os = product.os.then(|| platform(ua, parsed)).flatten();
        return compose(product.name, version, os);
    }

    if let Some(r) = parsed {
        // "misc crawler" is woothee's guess from a "bot" in the name: the token says more.
        if r.category == "crawler" && !matches!(r.name, "UNKNOWN" | "misc crawler") {
            return capitalize(r.name);
        }
        let device = ["pc", "smartphone", "mobilephone", "appliance"];
        if device.contains(&r.category) && r.name != "UNKNOWN" {
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
    fallback(ua, parsed)
}

/// An agent nobody knows is shown by its own first product token: one outside
/// comments, else one inside ("compatible; SomeBot/1.0"), else even "Mozilla".
fn fallback(ua: &str, parsed: Option<&WootheeResult>) -> String {
    let outside = strip_comments(ua);
    let is_product = |t: &&str| {
        let name = t.split('/').next().unwrap_or_default();
        name.starts_with(|c: char| c.is_alphabetic()) && name.chars().all(|c| c.is_alphanumeric() || "-_.!".contains(c))
    };
    let in_comments = ua.split([' ', ';', '(', ')']).filter(|t| t.contains('/'));
    let Some(token) = (outside.split_whitespace().chain(in_comments))
        .filter(|t| !t.starts_with("Mozilla/"))
        .find(is_product)
        .or_else(|| outside.split_whitespace().find(is_product))
    else {
        return UNKNOWN_CLIENT.to_string();
    };
    let (name, rest) = token.split_once('/').unwrap_or((token, ""));
    compose(&clean(name), version_at(rest, MajorMinor), platform(ua, parsed))
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
    ua.match_indices(token).map(|(at, _)| at).find(|&at| at == 0 || starts_word(at))
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
    let r = parsed?;
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

/// The name of a mobile device registered by the Moodle app (Moodle's
/// `user_devices` fields); `name` is used only when there is no model.
pub fn describe_device(
    name: Option<&str>,
    model: Option<&str>,
    platform: Option<&str>,
    os_version: Option<&str>,
    app_version: Option<&str>,
) -> Option<String> {
    let field = |v: Option<&str>| v.map(clean).filter(|s| !s.is_empty());
    let device = field(model).or_else(|| field(name));
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
    (!parts.is_empty()).then(|| parts.join(SEP))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURE: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/user-agents.tsv"));

    #[test]
    fn every_fixture_row_gets_its_readable_name() {
        let mismatches: Vec<String> = FIXTURE
            .lines()
            .skip(1)
            .filter(|line| !line.trim().is_empty())
            .filter_map(|line| {
                let mut cols = line.split('\t');
                let (ua, want) = (cols.next().unwrap_or(""), cols.next().unwrap_or(""));
                let got = describe_user_agent(ua);
                (got != want).then(|| format!("{ua:?}\n  want {want:?}\n  got  {got:?}"))
            })
            .collect();
        assert!(mismatches.is_empty(), "{} mismatches:\n{}", mismatches.len(), mismatches.join("\n"));
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
            ("Mozilla/5.0 (compatible; YandexBot/3.0; +http://y.co)", "YandexBot 3.0"),
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
}

//! How pages word keys: a type's label for one key, a label inside a sentence, a key named
//! with its kind and owner, and when a key stops.

use super::templates::Clock;
use crate::core::KeyEntry;

/// A key's service, and a personal access token's own functions after it:
/// "Moodle mobile web service · personal token: core_webservice_get_site_info".
pub fn service_and_scope(k: &KeyEntry) -> String {
    let service = k.service.clone().unwrap_or_default();
    match &k.function_scope {
        Some(functions) => format!("{service} · personal token: {}", functions.join(", ")),
        None => service,
    }
}

/// "Pixel 8 (Web-service token of alice)", or "Web-service token of alice" when it has no name.
pub fn key_label(k: &KeyEntry) -> String {
    let owner = k.owner.as_ref().map_or(String::new(), |(username, _)| format!(" of {username}"));
    let kind = singular(&k.type_label);
    if k.name.trim().is_empty() {
        format!("{kind}{owner}")
    } else {
        format!("{} ({kind}{owner})", k.name)
    }
}

/// One of a type, from the type's label, which names many: "Web-service tokens" → "Web-service
/// token". A label that is not a plain plural stays as it is.
pub fn singular(label: &str) -> &str {
    match label.strip_suffix('s') {
        Some(one) if !one.ends_with('s') && !one.is_empty() => one,
        _ => label,
    }
}

/// When a key stops or stopped: "Revoked 3 minutes ago", "Expired 2 days ago", "in 7 days",
/// "Never"; and the exact time.
pub fn ending(k: &KeyEntry, clock: &Clock) -> (String, String) {
    match (k.revoked_at, k.valid_until) {
        (Some(at), _) => (format!("Revoked {}", clock.relative(at)), clock.exact(at)),
        (None, Some(v)) if v <= clock.now => (format!("Expired {}", clock.relative(v)), clock.exact(v)),
        // Revoked sooner if left unused.
        (None, v) if k.expires_unused_at.is_some_and(|u| v.is_none_or(|v| u < v)) => {
            let u = k.expires_unused_at.unwrap_or(clock.now);
            (format!("{} if unused", clock.relative(u)), clock.exact(u))
        }
        (None, Some(v)) => (clock.relative(v), clock.exact(v)),
        (None, None) => ("Never".into(), String::new()),
    }
}

/// A label inside a sentence: "Calendar export keys" → "calendar export keys", "RSS…" kept.
pub fn in_sentence(label: &str) -> String {
    let mut chars = label.chars();
    match (chars.next(), chars.next()) {
        (Some(first), Some(second)) if !second.is_uppercase() => {
            first.to_lowercase().chain(label[first.len_utf8()..].chars()).collect()
        }
        _ => label.to_owned(),
    }
}

//! Where a person may be sent after signing in: only somewhere on this site (Moodle's
//! PARAM_LOCALURL), so a link cannot bounce them to another site.

/// `target` if it is a path on this site or an address under `wwwroot`, else `None`.
pub fn local_target(target: &str, wwwroot: &str) -> Option<String> {
    let target = target.trim();
    // Browsers drop tabs and newlines inside URLs and read `\` as `/`: `/\t/evil` is `//evil`.
    if target.chars().any(|c| c.is_control() || c.is_whitespace() || c == '\\') {
        return None;
    }
    let on_site = (target.starts_with('/') && !target.starts_with("//"))
        || target == wwwroot
        || target.starts_with(&format!("{wwwroot}/"));
    on_site.then(|| target.to_owned())
}

#[cfg(test)]
mod tests {
    use super::local_target;

    #[test]
    fn only_local_targets() {
        let root = "https://m.example.org";
        assert_eq!(local_target("/user/managetoken.php", root).as_deref(), Some("/user/managetoken.php"));
        assert_eq!(local_target("https://m.example.org/my/", root).as_deref(), Some("https://m.example.org/my/"));
        for bad in [
            "//evil.example",
            "https://m.example.org.evil.example/",
            "/\t/evil.example/",
            "/\\evil.example",
            "https://evil.example/",
            "",
        ] {
            assert_eq!(local_target(bad, root), None, "{bad:?}");
        }
    }
}

//! Marketing names for the device model codes the Moodle app registers ("iPhone15,3" is an
//! "iPhone 14 Pro Max", "SM-S911B" a "Galaxy S23"). The table and its sources are in
//! `device-models.tsv`; no maintained Rust crate holds this list.

use std::collections::HashMap;
use std::sync::LazyLock;

const TABLE: &str = include_str!("device-models.tsv");

static MODELS: LazyLock<HashMap<&'static str, &'static str>> = LazyLock::new(|| {
    TABLE
        .lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(|line| line.split_once('\t'))
        .map(|(code, name)| (code.trim(), name.trim()))
        .collect()
});

/// The name a person knows `model` by, if the table has it. Samsung codes match whatever
/// region suffix follows them ("SM-S911B", "SM-S911U1", "SM-F7110").
pub fn marketing_name(model: &str) -> Option<&'static str> {
    let model = model.trim();
    if let Some(name) = MODELS.get(model) {
        return Some(name);
    }
    // "SM-" and the four characters of the model; the rest is region and carrier.
    let base = model.get(..7).filter(|b| b.len() == 7 && b.to_ascii_uppercase().starts_with("SM-"))?;
    MODELS.get(base.to_ascii_uppercase().as_str()).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apple_identifiers() {
        assert_eq!(marketing_name("iPhone15,3"), Some("iPhone 14 Pro Max"));
        assert_eq!(marketing_name(" iPhone8,1 "), Some("iPhone 6s"));
        assert_eq!(marketing_name("iPhone17,5"), Some("iPhone 16e"));
        assert_eq!(marketing_name("iPad13,18"), Some("iPad (10th generation)"));
        assert_eq!(marketing_name("iPad16,5"), Some("iPad Pro 13-inch (M4)"));
    }

    #[test]
    fn samsung_codes_with_any_region_suffix() {
        assert_eq!(marketing_name("SM-S911B"), Some("Galaxy S23"));
        assert_eq!(marketing_name("SM-S928U1"), Some("Galaxy S24 Ultra"));
        assert_eq!(marketing_name("sm-a546b"), Some("Galaxy A54 5G"));
        assert_eq!(marketing_name("SM-F7110"), Some("Galaxy Z Flip3 5G"));
    }

    #[test]
    fn unknown_and_odd_codes() {
        for code in ["", "Pixel 8", "iPhone99,1", "SM-", "SM-X", "SM-Z999", "SMé-1234", "ééééééé", "iPhone15"] {
            assert_eq!(marketing_name(code), None, "for {code:?}");
        }
    }

    #[test]
    fn every_row_is_well_formed() {
        let rows: Vec<&str> = TABLE.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()).collect();
        assert!(rows.len() > 150);
        for row in rows {
            let (code, name) = row.split_once('\t').unwrap_or_else(|| panic!("no tab in {row:?}"));
            assert!(!code.is_empty() && !name.is_empty() && !name.contains('\t'), "{row:?}");
        }
    }
}

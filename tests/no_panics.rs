//! Whatever a client sends, the parsers and namers answer without panicking: Moodle's
//! PHP-style form decoding (and its JSON form), IP restrictions, on-site redirect targets and
//! user-agent naming, each over generated input. A bounded number of cases per run (proptest's
//! default, 256; more with PROPTEST_CASES), so it runs in every `cargo test`.

use proptest::prelude::*;
use userkeys::domain::ip_restriction::IpRestriction;
use userkeys::domain::local_url::local_target;
use userkeys::domain::user_agent::{describe_device, describe_user_agent};
use userkeys::moodle::params::Params;

/// Form-encoded text with the shapes Moodle's decoder cares about: brackets, indexes, %-escapes.
fn formish() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            Just("a".to_owned()),
            Just("[".to_owned()),
            Just("]".to_owned()),
            Just("[0]".to_owned()),
            Just("[]".to_owned()),
            Just("=".to_owned()),
            Just("&".to_owned()),
            Just("%".to_owned()),
            Just("%5B".to_owned()),
            Just("%ZZ".to_owned()),
            Just("+".to_owned()),
            "[0-9]{1,20}",
            "\\PC{0,4}",
        ],
        0..40,
    )
    .prop_map(|parts| parts.concat())
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(serde_json::Value::Null, Into::into)),
        "\\PC{0,12}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(serde_json::Value::from),
            prop::collection::btree_map("[a-z0-9\\[\\]]{0,6}", inner, 0..8)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn moodle_form_decoding_never_panics(query in formish(), body in formish(), name in "[a-z\\[\\]0-9]{0,10}") {
        if let Ok(params) = Params::parse(query.as_bytes(), body.as_bytes()) {
            let _ = params.text(&name);
            let _ = params.list(&name);
            let _ = params.required_int(&name);
        }
    }

    #[test]
    fn moodle_json_arguments_never_panic(value in json_value(), name in "[a-z0-9]{0,6}") {
        if let Ok(params) = Params::from_json(&value) {
            let _ = params.text(&name);
            let _ = params.list(&name);
        }
    }

    #[test]
    fn ip_restrictions_never_panic(input in "[0-9a-fA-F:./, \\n]{0,60}|\\PC{0,30}") {
        if let Ok(Some(restriction)) = IpRestriction::parse(&input) {
            let _ = restriction.allows("203.0.113.9".parse().unwrap());
            let stored = restriction.to_stored();
            prop_assert_eq!(IpRestriction::parse(&stored).unwrap(), Some(restriction), "stored form reads back");
        }
    }

    #[test]
    fn redirect_targets_never_panic_and_stay_on_site(target in "[/\\\\a-z.:%\\t0-9@?#]{0,30}|\\PC{0,20}") {
        if let Some(local) = local_target(&target, "https://moodle.example.org") {
            prop_assert!(local.starts_with('/') && !local.starts_with("//") && !local.starts_with("/\\"), "{local}");
            prop_assert!(!local.chars().any(char::is_control), "{local:?}");
        }
    }

    #[test]
    fn user_agent_naming_never_panics(agent in "\\PC{0,200}", parts in prop::collection::vec("\\PC{0,20}", 5)) {
        let named = describe_user_agent(&agent);
        prop_assert!(!named.is_empty());
        let _ = describe_device(Some(&parts[0]), Some(&parts[1]), Some(&parts[2]), Some(&parts[3]), Some(&parts[4]));
    }
}

//! Configuration parsing, validation and profiles, checked.

use super::*;

fn src(text: &str) -> Source<'_> {
    Source {
        name: "lethe.toml",
        text,
    }
}

#[test]
fn builtin_defaults_declare_audit_and_requests_with_a_180_day_anonymize_default() {
    let c = Config::builtin();
    let names: Vec<_> = c.schemas().iter().map(|s| s.id.to_string()).collect();
    assert_eq!(names, ["audit:1", "requests:1"]);
    assert_eq!(c.retention.default.window, Window::Span(180 * 86_400));
    assert_eq!(c.retention.default.action, PolicyAction::Anonymize);
    assert_eq!(c.keys.master_key_file, "master.key");
    assert_eq!(c.store.partition, Window::Span(86_400));
}

#[test]
fn unknown_keys_are_errors_naming_their_path() {
    let e = load(
        src("[retention]\ndefault = { window = \"30d\", colour = 1 }\n"),
        None,
        &[],
    )
    .unwrap_err();
    let s = e.to_string();
    assert!(s.contains("retention.default"), "{s}");
    assert!(s.contains("colour"), "{s}");
    let e = load(
        src("[[retention.policy]]\nwindow = \"3x\"\naction = \"delete\"\n"),
        None,
        &[],
    )
    .unwrap_err();
    assert!(e.to_string().contains("retention.policy[0].window"), "{e}");
}

#[test]
fn a_disabled_policy_needs_no_window_or_action_and_an_enabled_one_names_what_is_missing() {
    let c = load(
        src("[[retention.policy]]\ntenant = \"acme\"\nenabled = false\n"),
        None,
        &[],
    )
    .unwrap();
    let book = c.policy_book();
    assert!(!book.retention[0].enabled);
    let e = load(
        src("[[retention.policy]]\ntenant = \"acme\"\nwindow = \"1y\"\n"),
        None,
        &[],
    )
    .unwrap_err();
    assert!(e.to_string().contains("retention.policy[0].action"), "{e}");
    let e = load(
        src("[[retention.policy]]\ntenant = \"acme\"\naction = \"delete\"\n"),
        None,
        &[],
    )
    .unwrap_err();
    assert!(e.to_string().contains("retention.policy[0].window"), "{e}");
}

#[test]
fn witness_archive_targets_must_exist() {
    let e = load(src("[witness]\narchive = [\"nowhere\"]\n"), None, &[]).unwrap_err();
    assert!(e.to_string().contains("witness.archive[0]"), "{e}");
    let c = load(
        src("[witness]\nfile = \"heads.jsonl\"\narchive = [\"local\"]\n"),
        None,
        &[],
    )
    .unwrap();
    assert!(c.witness.any());
}

#[test]
fn profiles_merge_over_the_base_and_env_overrides_win() {
    let text = "[retention.default]\nwindow = \"90d\"\n[profiles.short.retention.default]\nwindow = \"7d\"\n";
    assert_eq!(
        load(src(text), None, &[]).unwrap().retention.default.window,
        Window::Span(90 * 86_400)
    );
    assert_eq!(
        load(src(text), Some("short"), &[]).unwrap().retention.default.window,
        Window::Span(7 * 86_400)
    );
    let env = vec![("LETHE_RETENTION__DEFAULT__WINDOW".to_string(), "1d".to_string())];
    assert_eq!(
        load(src(text), Some("short"), &env).unwrap().retention.default.window,
        Window::Span(86_400)
    );
    let e = load(src(text), Some("nope"), &[]).unwrap_err();
    assert!(e.to_string().contains("short"), "{e}");
    let env = vec![("LETHE_RETENTION__BOGUS".to_string(), "1".to_string())];
    assert!(load(src(text), None, &env).unwrap_err().to_string().contains("bogus"));
}

#[test]
fn policies_must_name_declared_streams() {
    let e = load(
        src("[[retention.policy]]\nstream = \"nope\"\nwindow = \"1d\"\naction = \"delete\"\n"),
        None,
        &[],
    )
    .unwrap_err();
    assert!(e.to_string().contains("retention.policy[0].stream"), "{e}");
}

#[test]
fn the_shipped_sample_config_loads_in_every_profile() {
    let text = include_str!("../../../../lethe.toml");
    let base = load(src(text), None, &[]).unwrap();
    assert!(!base.retention.policy.is_empty());
    let root: toml::Table = text.parse().unwrap();
    for name in root["profiles"].as_table().unwrap().keys() {
        load(src(text), Some(name), &[]).unwrap();
    }
}

#[test]
fn archive_settings_are_checked_and_errors_name_the_key() {
    let err = |text: &str| load(src(text), None, &[]).unwrap_err().to_string();
    let policy = |extra: &str| {
        format!("[[retention.policy]]\nstream = \"audit\"\nwindow = \"90d\"\naction = \"archive_then_delete\"\n{extra}")
    };
    let e = err(&policy(""));
    assert!(
        e.contains("retention.policy[0].archive_window") && e.contains("required"),
        "{e}"
    );
    let e = err(&policy("archive_window = \"30d\"\n"));
    assert!(
        e.contains("retention.policy[0].archive_window") && e.contains("shorter"),
        "{e}"
    );
    let e = err(&policy("archive_window = \"365d\"\narchive = \"glacier\"\n"));
    assert!(
        e.contains("retention.policy[0].archive") && e.contains("no archive target `glacier`"),
        "{e}"
    );
    let e = err("[[retention.policy]]\nwindow = \"9d\"\naction = \"delete\"\narchive_window = \"9d\"\n");
    assert!(
        e.contains("retention.policy[0].archive_window") && e.contains("only valid"),
        "{e}"
    );
    let e = err("[archive.targets.s3]\nkind = \"s3\"\n");
    assert!(e.contains("archive.targets.s3.bucket"), "{e}");
    let e = err("[archive]\nzstd_level = 30\n");
    assert!(e.contains("archive.zstd_level"), "{e}");
    let e = err("[archive]\nzstd_level = 0\n");
    assert!(e.contains("archive.zstd_level") && e.contains("fast level"), "{e}");
    let e = err("[archive]\nrestore_window = \"forever\"\n");
    assert!(e.contains("archive.restore_window") && e.contains("finite"), "{e}");
    let e = err("[archive.targets.x]\nkind = \"ftp\"\n");
    assert!(e.contains("archive.targets.x.kind") || e.contains("ftp"), "{e}");

    // A valid one: the rule carries its target and window; the secret never prints.
    let c = load(
        src(&format!(
            "{}[archive.targets.s3]\nkind = \"s3\"\nbucket = \"b\"\nsecret_access_key = \"hunter2\"\n",
            policy("archive_window = \"forever\"\narchive = \"s3\"\n")
        )),
        None,
        &[],
    )
    .unwrap();
    let rule = &c.policy_book().retention[0];
    assert_eq!(rule.action, Action::Delete);
    assert_eq!(rule.action_name(), "archive_then_delete");
    assert_eq!(rule.archive.as_ref().unwrap().target, "s3");
    assert_eq!(rule.archive.as_ref().unwrap().window, Window::Forever);
    assert!(!c.to_toml().contains("hunter2"));
    assert!(
        c.archive.effective_targets().contains_key("local"),
        "the local target is built in"
    );
}

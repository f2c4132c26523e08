//! The shipped units in `contrib/` run what they say: their environment
//! and command lines, pointed at a temporary directory, are accepted by
//! the real binary.

use std::path::{Path, PathBuf};

fn contrib(rel: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../contrib").join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// `KEY=VALUE` settings of a unit (`Environment=`) or crontab, and its
/// command's arguments after the binary.
fn parse(text: &str, unit: bool) -> (Vec<(String, String)>, Vec<String>) {
    let mut env = Vec::new();
    let mut args = Vec::new();
    for line in text
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let setting = if unit {
            line.strip_prefix("Environment=")
        } else {
            Some(line)
        };
        if let Some((k, v)) = setting.and_then(|s| s.split_once('=')) {
            if k.starts_with("LETHE_") {
                env.push((k.to_string(), v.to_string()));
                continue;
            }
        }
        let command = if unit {
            line.strip_prefix("ExecStart=")
        } else {
            Some(line)
        };
        if let Some(c) = command {
            if let Some(at) = c.find("/usr/local/bin/lethe ") {
                args = c[at + "/usr/local/bin/lethe ".len()..]
                    .split(">>")
                    .next()
                    .unwrap()
                    .split_whitespace()
                    .map(String::from)
                    .collect();
            }
        }
    }
    (env, args)
}

/// Runs the binary with a unit's environment, its paths moved under `root`.
fn run_as(root: &Path, env: &[(String, String)], args: &[String]) -> std::process::Output {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_lethe"));
    for (k, _) in std::env::vars() {
        if k.starts_with("LETHE_") {
            c.env_remove(k);
        }
    }
    for (k, v) in env {
        let moved: PathBuf = root.join(v.trim_start_matches('/'));
        c.env(k, &moved);
    }
    c.args(args).output().unwrap()
}

fn prepare(root: &Path) {
    std::fs::create_dir_all(root.join("etc/lethe")).unwrap();
    std::fs::create_dir_all(root.join("var/lib/lethe")).unwrap();
    std::fs::write(
        root.join("etc/lethe/lethe.toml"),
        "[retention.default]\nwindow = \"30d\"\n",
    )
    .unwrap();
    std::fs::write(root.join("etc/lethe/master.key"), format!("{:064x}\n", 7)).unwrap();
}

#[test]
fn the_cleanup_timer_unit_and_crontab_run_a_sweep_with_their_settings() {
    for (file, unit) in [("systemd/lethe-cleanup.service", true), ("cron/lethe-cleanup", false)] {
        let d = tempfile::tempdir().unwrap();
        prepare(d.path());
        let (env, args) = parse(&contrib(file), unit);
        assert_eq!(args, ["cleanup", "--json"], "{file}");
        assert_eq!(env.len(), 3, "{file}: {env:?}");
        let o = run_as(d.path(), &env, &args);
        assert!(o.status.success(), "{file}: {}", String::from_utf8_lossy(&o.stderr));
        let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert!(report["result"]["receipt"].is_u64(), "{file}: {report}");
        assert!(
            d.path().join("var/lib/lethe/catalog.db").exists(),
            "{file}: the data directory is used"
        );
    }
}

#[test]
fn the_server_unit_names_settings_the_binary_accepts() {
    let d = tempfile::tempdir().unwrap();
    prepare(d.path());
    let (env, args) = parse(&contrib("systemd/lethe.service"), true);
    assert_eq!(args, ["serve"]);
    // The same settings, asked for the effective configuration.
    let o = run_as(d.path(), &env, &["config".into(), "show".into()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("/etc/lethe/master.key"), "{text}");
    let timer = contrib("systemd/lethe-cleanup.timer");
    assert!(timer.contains("OnCalendar=*-*-* 02:00:00 UTC") && timer.contains("Persistent=true"));
}

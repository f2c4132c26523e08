//! Loading a configuration: the file, its profile merged over it, then `LETHE_…` environment overrides.

use super::*;

/// Where a configuration came from, for error messages.
pub struct Source<'a> {
    /// File name, or `built-in defaults`.
    pub name: &'a str,
    /// The TOML text (empty for built-in defaults).
    pub text: &'a str,
}

/// Parses a configuration: the base file, then `[profiles.<profile>]` merged
/// over it, then `LETHE_<PATH>` overrides from `env` (path segments separated by
/// `__`, e.g. `LETHE_RETENTION__DEFAULT__WINDOW=90d`). Unknown keys are errors
/// naming their path.
pub fn load(source: Source<'_>, profile: Option<&str>, env: &[(String, String)]) -> Result<Config, ConfigError> {
    let name = source.name.to_string();
    let mut root: toml::Table = source.text.parse().map_err(|e: toml::de::Error| ConfigError::Syntax {
        source_name: name.clone(),
        message: e.to_string(),
    })?;
    let profiles = root.remove("profiles");
    if let Some(p) = profile {
        let table = profiles.as_ref().and_then(|v| v.as_table());
        let chosen = table.and_then(|t| t.get(p)).and_then(|v| v.as_table()).ok_or_else(|| {
            let names: Vec<_> = table.map(|t| t.keys().cloned().collect()).unwrap_or_default();
            ConfigError::UnknownProfile(
                p.to_string(),
                if names.is_empty() {
                    "none".into()
                } else {
                    names.join(", ")
                },
            )
        })?;
        merge(&mut root, chosen.clone());
    }
    for (k, v) in env {
        apply_env(&mut root, k, v)?;
    }
    let de = toml::Value::Table(root);
    let cfg: Config = serde_path_to_error::deserialize(de).map_err(|e| ConfigError::Invalid {
        source_name: name.clone(),
        path: e.path().to_string(),
        message: e.inner().to_string(),
    })?;
    cfg.validate().map_err(|(path, message)| ConfigError::Invalid {
        source_name: name,
        path,
        message,
    })?;
    Ok(cfg)
}

/// Environment variables that are options of the binary, not configuration paths.
pub const RESERVED_ENV: &[&str] = &[
    "LETHE_DATA_DIR",
    "LETHE_CONFIG",
    "LETHE_PROFILE",
    "LETHE_MASTER_KEY",
    "LETHE_LOG",
];

/// The `LETHE_…` configuration overrides among `vars` (reserved names and
/// test hooks excluded).
pub fn env_overrides(vars: impl Iterator<Item = (String, String)>) -> Vec<(String, String)> {
    let mut v: Vec<_> = vars
        .filter(|(k, _)| {
            k.starts_with("LETHE_") && !RESERVED_ENV.contains(&k.as_str()) && !k.starts_with("LETHE_TEST_")
        })
        .collect();
    v.sort();
    v
}

fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

fn apply_env(root: &mut toml::Table, key: &str, value: &str) -> Result<(), ConfigError> {
    let path: Vec<String> = key["LETHE_".len()..]
        .split("__")
        .map(|s| s.to_ascii_lowercase())
        .collect();
    if path.iter().any(|p| p.is_empty()) {
        return Err(ConfigError::Env(key.into(), "empty path segment".into()));
    }
    let parsed = format!("v = {value}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(value.to_string()));
    let mut t = root;
    for seg in &path[..path.len() - 1] {
        let entry = t
            .entry(seg.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        t = entry
            .as_table_mut()
            .ok_or_else(|| ConfigError::Env(key.into(), format!("`{seg}` is not a table")))?;
    }
    t.insert(path[path.len() - 1].clone(), parsed);
    Ok(())
}

//! Checking a loaded configuration: every error names the key it is about.

use super::*;

impl Config {
    pub(super) fn validate(&self) -> Result<(), (String, String)> {
        match self.store.backend.as_str() {
            "sqlite" => {}
            "postgres" => {
                if self.store.url.as_deref().is_none_or(|u| u.trim().is_empty()) {
                    return Err((
                        "store.url".into(),
                        "is required with store.backend = \"postgres\" (or set LETHE_STORE__URL)".into(),
                    ));
                }
                if self.store.schema.is_empty()
                    || self.store.schema.len() > 48
                    || !self
                        .store
                        .schema
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
                {
                    return Err((
                        "store.schema".into(),
                        "must be 1–48 characters of a-z, 0-9 and _".into(),
                    ));
                }
                if self.store.pool_size < 2 {
                    return Err(("store.pool_size".into(), "must be at least 2".into()));
                }
            }
            other => {
                return Err((
                    "store.backend".into(),
                    format!("unknown backend `{other}` (available: sqlite, postgres)"),
                ))
            }
        }
        match self.store.partition {
            Window::Span(s) if (s % 86_400 == 0) || (s % 3600 == 0 && 86_400 % s == 0) => {}
            _ => {
                return Err((
                    "store.partition".into(),
                    "must be whole days, or whole hours dividing a day (e.g. `1d`, `6h`)".into(),
                ))
            }
        }
        match self.server.leader_check {
            Window::Span(s) if (1..=300).contains(&s) => {}
            _ => {
                return Err((
                    "server.leader_check".into(),
                    "must be between 1s and 5m (a new leader takes over within about this long)".into(),
                ))
            }
        }
        match (&self.server.tls_cert, &self.server.tls_key) {
            (Some(_), None) => return Err(("server.tls_key".into(), "is required with server.tls_cert".into())),
            (None, Some(_)) => return Err(("server.tls_cert".into(), "is required with server.tls_key".into())),
            _ => {}
        }
        for (name, text) in [("sweep", &self.schedule.sweep), ("verify", &self.schedule.verify)] {
            super::parse_schedule_entry(text).map_err(|e| (format!("schedule.{name}"), e.to_string()))?;
        }
        if self.store.ingest_batch == 0 {
            return Err(("store.ingest_batch".into(), "must be positive".into()));
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, s) in self.streams.iter().enumerate() {
            let id = StreamId::new(&s.name, s.version).map_err(|e| (format!("streams[{i}]"), e.to_string()))?;
            if !seen.insert(id.clone()) {
                return Err((format!("streams[{i}]"), format!("stream `{id}` declared twice")));
            }
            for reserved in crate::record::RESERVED_TOP_LEVEL {
                if s.fields.contains_key(*reserved) {
                    return Err((
                        format!("streams[{i}].fields.{reserved}"),
                        "is a reserved top-level name".into(),
                    ));
                }
            }
        }
        let check_stream = |path: String, st: &Option<String>| -> Result<(), (String, String)> {
            if let Some(st) = st {
                let ok = if st.contains(':') {
                    st.parse::<StreamId>().map(|id| seen.contains(&id)).unwrap_or(false)
                } else {
                    seen.iter().any(|id| &id.name == st)
                };
                if !ok {
                    return Err((path, format!("no declared stream matches `{st}`")));
                }
            }
            Ok(())
        };
        for (i, c) in self.capture.iter().enumerate() {
            check_stream(format!("capture[{i}].stream"), &c.stream)?;
        }
        let targets = self.archive.effective_targets();
        for (name, t) in &targets {
            let path = |k: &str| format!("archive.targets.{name}.{k}");
            match t.kind {
                TargetKind::Local => {
                    if t.path.as_deref().is_none_or(str::is_empty) {
                        return Err((path("path"), "is required for a local target".into()));
                    }
                    for (k, v) in [("bucket", &t.bucket), ("endpoint", &t.endpoint)] {
                        if v.is_some() {
                            return Err((path(k), "is only valid for kind = \"s3\"".into()));
                        }
                    }
                }
                TargetKind::S3 => {
                    if t.bucket.as_deref().is_none_or(str::is_empty) {
                        return Err((path("bucket"), "is required for an s3 target".into()));
                    }
                    if t.path.is_some() {
                        return Err((path("path"), "is only valid for kind = \"local\"".into()));
                    }
                }
            }
        }
        if !(-7..=19).contains(&self.archive.zstd_level) || self.archive.zstd_level == 0 {
            return Err((
                "archive.zstd_level".into(),
                "must be between 1 and 19, or a fast level between -7 and -1".into(),
            ));
        }
        if self.archive.restore_window.micros().is_none_or(|w| w <= 0) {
            return Err((
                "archive.restore_window".into(),
                "must be a finite, positive duration: restored copies always expire".into(),
            ));
        }
        if self.archive.object_max_mb == 0 {
            return Err(("archive.object_max_mb".into(), "must be positive".into()));
        }
        let check_archive = |prefix: String,
                             action: PolicyAction,
                             window: Window,
                             archive: &Option<String>,
                             archive_window: &Option<Window>|
         -> Result<(), (String, String)> {
            let rule =
                archive_rule(action, window, archive, archive_window).map_err(|(k, m)| (format!("{prefix}.{k}"), m))?;
            if let Some(r) = rule {
                if !targets.contains_key(&r.target) {
                    let known: Vec<&str> = targets.keys().map(String::as_str).collect();
                    return Err((
                        format!("{prefix}.archive"),
                        format!("no archive target `{}` (configured: {})", r.target, known.join(", ")),
                    ));
                }
            }
            Ok(())
        };
        let d = &self.retention.default;
        check_archive(
            "retention.default".into(),
            d.action,
            d.window,
            &d.archive,
            &d.archive_window,
        )?;
        for (i, p) in self.retention.policy.iter().enumerate() {
            check_stream(format!("retention.policy[{i}].stream"), &p.stream)?;
            if p.enabled {
                if p.window.is_none() {
                    return Err((
                        format!("retention.policy[{i}].window"),
                        "is required for an enabled policy (e.g. \"30d\" or \"forever\")".into(),
                    ));
                }
                if p.action.is_none() {
                    return Err((
                        format!("retention.policy[{i}].action"),
                        "is required for an enabled policy (delete, anonymize or archive_then_delete)".into(),
                    ));
                }
            }
            check_archive(
                format!("retention.policy[{i}]"),
                p.action(),
                p.window(),
                &p.archive,
                &p.archive_window,
            )?;
        }
        for (i, name) in self.witness.archive.iter().enumerate() {
            if !targets.contains_key(name) {
                let known: Vec<&str> = targets.keys().map(String::as_str).collect();
                return Err((
                    format!("witness.archive[{i}]"),
                    format!("no archive target `{name}` (configured: {})", known.join(", ")),
                ));
            }
        }
        if self.witness.file.as_deref().is_some_and(|f| f.trim().is_empty()) {
            return Err(("witness.file".into(), "must be a path".into()));
        }
        Ok(())
    }
}

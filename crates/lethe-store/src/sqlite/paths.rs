//! Where partition files live: names by stream, expiry class and period,
//! and the lock files beside them.

use super::*;

pub(super) fn partition_path(class: &str, stream: &StreamId, start_us: i64, span_us: i64) -> String {
    let d = chrono_like(start_us);
    let name = if span_us % 86_400_000_000 == 0 {
        d.0
    } else {
        format!("{}T{:02}", d.0, d.1)
    };
    format!(
        "partitions/{}-v{}/{}/{name}.db",
        stream.name,
        stream.version,
        class_dir(class)
    )
}

/// An expiry class as a directory name: itself when it is a short name of
/// `[A-Za-z0-9_-]`, else `h` and a hash of it.
pub(super) fn class_dir(class: &str) -> String {
    let plain = !class.is_empty()
        && class.len() <= 48
        && class
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if plain {
        return class.to_string();
    }
    // FNV-1a: stable across versions and platforms, no dependency.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in class.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("h{h:016x}")
}

/// (YYYY-MM-DD, hour) of a µs timestamp, without pulling a date library into the store.
pub(super) fn chrono_like(us: i64) -> (String, i64) {
    let secs = us.div_euclid(1_000_000);
    let days = secs.div_euclid(86_400);
    let hour = secs.rem_euclid(86_400) / 3600;
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    (format!("{y:04}-{m:02}-{d:02}"), hour)
}

/// Opens (creating) a file that is only ever `flock`ed.
pub(super) fn flock_file(path: &Path) -> Result<File> {
    File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| StoreError::io(format!("opening {}", path.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_paths_name_the_day_or_hour() {
        let s: StreamId = "audit:1".parse().unwrap();
        let t = 1_767_225_600_000_000; // 2026-01-01T00:00:00Z
        assert_eq!(
            partition_path("30d-delete", &s, t, 86_400_000_000),
            "partitions/audit-v1/30d-delete/2026-01-01.db"
        );
        assert_eq!(
            partition_path("default", &s, t + 6 * 3_600_000_000, 3_600_000_000),
            "partitions/audit-v1/default/2026-01-01T06.db"
        );
        assert_eq!(class_dir("../x"), class_dir("../x"));
        assert!(class_dir("../x").starts_with('h') && !class_dir("../x").contains('/'));
        assert_eq!(chrono_like(951_782_400_000_000).0, "2000-02-29");
    }
}

//! Cron schedules (five fields, UTC) and the scheduler's rule for what is
//! due: pure functions of the previous run and `now`, so that tests pass
//! instants instead of waiting for them.
//!
//! The syntax is the classic one: `minute hour day-of-month month
//! day-of-week`, each field `*`, a number, a range `a-b`, a step `*/n` or
//! `a-b/n`, or a comma-separated list of those; day-of-week 0 or 7 is
//! Sunday; names (`mon`, `jan`) are accepted. As in Vixie cron, when both
//! day-of-month and day-of-week are restricted a day matching either runs.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveTime, TimeZone, Timelike, Utc};

const MINUTE_US: i64 = 60_000_000;

/// A parsed five-field cron expression, evaluated in UTC.
#[derive(Clone, PartialEq, Eq)]
pub struct Cron {
    text: String,
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    days_restricted: bool,
    weekdays_restricted: bool,
}

/// Why a cron expression was refused; the message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CronError(String);

const FIELDS: [(&str, u32, u32); 5] = [
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day of month", 1, 31),
    ("month", 1, 12),
    ("day of week", 0, 7),
];

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const WEEKDAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

fn value(field: usize, s: &str) -> Result<u32, CronError> {
    let (name, lo, hi) = FIELDS[field];
    let lower = s.to_ascii_lowercase();
    let named = match field {
        3 => MONTHS.iter().position(|m| *m == lower).map(|i| i as u32 + 1),
        4 => WEEKDAYS.iter().position(|d| *d == lower).map(|i| i as u32),
        _ => None,
    };
    let v = match named {
        Some(v) => v,
        None => s
            .parse::<u32>()
            .map_err(|_| CronError(format!("{name}: `{s}` is not a number")))?,
    };
    if v < lo || v > hi {
        return Err(CronError(format!("{name}: {v} is outside {lo}-{hi}")));
    }
    Ok(v)
}

fn parse_field(field: usize, text: &str) -> Result<(u64, bool), CronError> {
    let (name, lo, hi) = FIELDS[field];
    let mut bits = 0u64;
    let mut restricted = false;
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => {
                let step = s
                    .parse::<u32>()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| CronError(format!("{name}: step `{s}` is not a positive number")))?;
                (r, step)
            }
            None => (part, 1),
        };
        let (a, b) = if range == "*" {
            (lo, hi)
        } else if let Some((a, b)) = range.split_once('-') {
            restricted = true;
            (value(field, a)?, value(field, b)?)
        } else {
            restricted = true;
            let v = value(field, range)?;
            // `5/15` means 5, 20, 35, 50: from the value to the end.
            (v, if step > 1 { hi } else { v })
        };
        if a > b {
            return Err(CronError(format!("{name}: range {a}-{b} is backwards")));
        }
        if range == "*" && step > 1 {
            restricted = true;
        }
        let mut v = a;
        while v <= b {
            bits |= 1 << v;
            v += step;
        }
    }
    if field == 4 && bits & (1 << 7) != 0 {
        // 7 is Sunday too.
        bits = (bits & !(1 << 7)) | 1;
    }
    Ok((bits, restricted))
}

impl FromStr for Cron {
    type Err = CronError;

    fn from_str(s: &str) -> Result<Self, CronError> {
        let parts: Vec<&str> = s.split_whitespace().collect();
        if parts.len() != 5 {
            return Err(CronError(format!(
                "expected five fields (minute hour day-of-month month day-of-week), found {}",
                parts.len()
            )));
        }
        let mut sets = [(0u64, false); 5];
        for (i, p) in parts.iter().enumerate() {
            sets[i] = parse_field(i, p)?;
        }
        Ok(Cron {
            text: parts.join(" "),
            minutes: sets[0].0,
            hours: sets[1].0,
            days: sets[2].0,
            months: sets[3].0,
            weekdays: sets[4].0,
            days_restricted: sets[2].1,
            weekdays_restricted: sets[4].1,
        })
    }
}

impl fmt::Display for Cron {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Cron {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cron({})", self.text)
    }
}

/// How far the search for an occurrence looks: `0 0 29 2 *` (leap days)
/// recurs within eight years; an expression that never matches (`0 0 31 2 *`)
/// has no occurrence.
const SEARCH_DAYS: i64 = 366 * 8 + 2;

fn to_utc(us: i64) -> DateTime<Utc> {
    Utc.timestamp_micros(us).single().expect("µs timestamps are in range")
}

impl Cron {
    fn day_matches(&self, d: NaiveDate) -> bool {
        if self.months & (1 << d.month()) == 0 {
            return false;
        }
        let dom = self.days & (1 << d.day()) != 0;
        let dow = self.weekdays & (1 << d.weekday().num_days_from_sunday()) != 0;
        match (self.days_restricted, self.weekdays_restricted) {
            (true, true) => dom || dow,
            (true, false) => dom,
            (false, true) => dow,
            (false, false) => true,
        }
    }

    fn minutes_of_day(&self) -> impl DoubleEndedIterator<Item = u32> + '_ {
        (0..24u32).filter(|h| self.hours & (1 << h) != 0).flat_map(move |h| {
            (0..60u32)
                .filter(move |m| self.minutes & (1 << m) != 0)
                .map(move |m| h * 60 + m)
        })
    }

    fn at(d: NaiveDate, minute_of_day: u32) -> i64 {
        let t = NaiveTime::from_hms_opt(minute_of_day / 60, minute_of_day % 60, 0).expect("valid time");
        d.and_time(t).and_utc().timestamp_micros()
    }

    /// The first occurrence strictly after `t_us` (µs since the epoch), if
    /// the expression ever matches.
    pub fn next_after(&self, t_us: i64) -> Option<i64> {
        let t = to_utc(t_us);
        let start = t.date_naive();
        let after = t.hour() * 60 + t.minute();
        for offset in 0..SEARCH_DAYS {
            let d = start + Duration::days(offset);
            if !self.day_matches(d) {
                continue;
            }
            for m in self.minutes_of_day() {
                let at = Self::at(d, m);
                if offset > 0 || (m >= after && at > t_us) {
                    return Some(at);
                }
            }
        }
        None
    }

    /// The last occurrence at or before `t_us`, if any in the search window.
    pub fn last_at_or_before(&self, t_us: i64) -> Option<i64> {
        let t = to_utc(t_us);
        let start = t.date_naive();
        for offset in 0..SEARCH_DAYS {
            let d = start - Duration::days(offset);
            if !self.day_matches(d) {
                continue;
            }
            for m in self.minutes_of_day().rev() {
                let at = Self::at(d, m);
                if at <= t_us {
                    return Some(at);
                }
            }
        }
        None
    }
}

/// What the scheduler should do about one job at `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// Nothing has ever been scheduled here: remember `now` as the start, and
    /// run first at the next occurrence (a fresh store is not swept the
    /// moment the server first starts).
    Start,
    /// The occurrence at this instant (µs) has not been run: run it now. When
    /// several were missed (the server was down), only the latest is run.
    Run(i64),
    /// Nothing is due before this instant (µs), if ever.
    Wait(Option<i64>),
}

/// The scheduling rule: given the last occurrence that was run (or the
/// instant scheduling started) and `now`, what is due.
pub fn due(cron: &Cron, last: Option<i64>, now_us: i64) -> Due {
    let Some(last) = last else { return Due::Start };
    match cron.last_at_or_before(now_us) {
        Some(slot) if slot > last => Due::Run(slot),
        _ => Due::Wait(cron.next_after(now_us.max(last))),
    }
}

/// Rounds down to the minute (cron's resolution).
pub fn minute_floor(us: i64) -> i64 {
    us.div_euclid(MINUTE_US) * MINUTE_US
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> i64 {
        DateTime::parse_from_rfc3339(s).unwrap().timestamp_micros()
    }

    fn c(s: &str) -> Cron {
        s.parse().unwrap()
    }

    #[test]
    fn daily_at_two_finds_the_next_and_the_last_occurrence() {
        let daily = c("0 2 * * *");
        assert_eq!(
            daily.next_after(t("2026-12-05T01:59:00Z")),
            Some(t("2026-12-05T02:00:00Z"))
        );
        assert_eq!(
            daily.next_after(t("2026-12-05T02:00:00Z")),
            Some(t("2026-12-06T02:00:00Z"))
        );
        assert_eq!(
            daily.next_after(t("2026-12-31T03:00:00Z")),
            Some(t("2027-01-01T02:00:00Z"))
        );
        assert_eq!(
            daily.last_at_or_before(t("2026-12-05T02:00:00Z")),
            Some(t("2026-12-05T02:00:00Z"))
        );
        assert_eq!(
            daily.last_at_or_before(t("2026-12-05T01:59:59Z")),
            Some(t("2026-12-04T02:00:00Z"))
        );
    }

    #[test]
    fn steps_ranges_lists_and_names_parse() {
        let every15 = c("*/15 * * * *");
        assert_eq!(
            every15.next_after(t("2026-12-05T10:07:00Z")),
            Some(t("2026-12-05T10:15:00Z"))
        );
        let weekdays = c("30 6 * * mon-fri");
        // 2026-12-05 is a Saturday.
        assert_eq!(
            weekdays.next_after(t("2026-12-05T00:00:00Z")),
            Some(t("2026-12-07T06:30:00Z"))
        );
        let sunday = c("0 0 * * 7");
        assert_eq!(
            sunday.next_after(t("2026-12-05T00:00:00Z")),
            Some(t("2026-12-06T00:00:00Z"))
        );
        let list = c("0 1,13 1 jan,jul *");
        assert_eq!(
            list.next_after(t("2026-12-05T00:00:00Z")),
            Some(t("2027-01-01T01:00:00Z"))
        );
        assert_eq!(
            list.next_after(t("2027-01-01T01:00:00Z")),
            Some(t("2027-01-01T13:00:00Z"))
        );
    }

    #[test]
    fn day_of_month_or_day_of_week_when_both_are_restricted() {
        // The 13th, or any Friday.
        let cron = c("0 0 13 * fri");
        assert_eq!(
            cron.next_after(t("2026-12-05T00:00:00Z")),
            Some(t("2026-12-11T00:00:00Z"))
        );
        assert_eq!(
            cron.next_after(t("2026-12-11T00:00:00Z")),
            Some(t("2026-12-13T00:00:00Z"))
        );
    }

    #[test]
    fn leap_days_are_found_and_impossible_dates_never_match() {
        assert_eq!(
            c("0 0 29 2 *").next_after(t("2026-12-05T00:00:00Z")),
            Some(t("2028-02-29T00:00:00Z"))
        );
        assert_eq!(c("0 0 31 2 *").next_after(t("2026-12-05T00:00:00Z")), None);
    }

    #[test]
    fn bad_expressions_name_the_field() {
        let e = |s: &str| s.parse::<Cron>().unwrap_err().to_string();
        assert!(e("0 2 * *").contains("five fields"));
        assert!(e("61 2 * * *").contains("minute: 61 is outside 0-59"));
        assert!(e("0 x * * *").contains("hour: `x` is not a number"));
        assert!(e("0 2 * 13 *").contains("month"));
        assert!(e("*/0 * * * *").contains("step"));
        assert!(e("0 5-2 * * *").contains("backwards"));
    }

    #[test]
    fn a_fresh_schedule_starts_without_running() {
        assert_eq!(due(&c("0 2 * * *"), None, t("2026-12-05T12:00:00Z")), Due::Start);
    }

    #[test]
    fn nothing_is_due_between_occurrences() {
        let daily = c("0 2 * * *");
        assert_eq!(
            due(&daily, Some(t("2026-12-05T02:00:00Z")), t("2026-12-05T12:00:00Z")),
            Due::Wait(Some(t("2026-12-06T02:00:00Z")))
        );
        // Started after today's occurrence: the first run is tomorrow's.
        assert_eq!(
            due(&daily, Some(t("2026-12-05T03:00:00Z")), t("2026-12-05T03:00:01Z")),
            Due::Wait(Some(t("2026-12-06T02:00:00Z")))
        );
    }

    #[test]
    fn an_occurrence_reached_is_due_once() {
        let daily = c("0 2 * * *");
        let last = t("2026-12-04T02:00:00Z");
        assert_eq!(
            due(&daily, Some(last), t("2026-12-05T02:00:00Z")),
            Due::Run(t("2026-12-05T02:00:00Z"))
        );
        assert_eq!(
            due(&daily, Some(t("2026-12-05T02:00:00Z")), t("2026-12-05T02:00:30Z")),
            Due::Wait(Some(t("2026-12-06T02:00:00Z")))
        );
    }

    #[test]
    fn occurrences_missed_while_down_run_once_at_start_up() {
        let daily = c("0 2 * * *");
        // Down from the 1st to the 5th at noon: four occurrences missed, one run.
        assert_eq!(
            due(&daily, Some(t("2026-12-01T02:00:00Z")), t("2026-12-05T12:00:00Z")),
            Due::Run(t("2026-12-05T02:00:00Z"))
        );
    }
}

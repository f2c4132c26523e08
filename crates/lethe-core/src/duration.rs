//! Human retention windows (`30d`, `12h`, `90m`, `forever`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A retention window: a span of time, or `forever`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Window {
    /// A finite span, in seconds.
    Span(u64),
    /// Never expires.
    Forever,
}

/// Why a window string was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid duration `{input}`: {why} (expected e.g. `30d`, `12h`, `90m`, `45s`, `2w`, `1y` or `forever`)")]
pub struct WindowError {
    input: String,
    why: &'static str,
}

impl Window {
    /// The span in microseconds, or `None` for `forever`.
    pub fn micros(self) -> Option<i64> {
        match self {
            Window::Span(s) => Some((s as i64).saturating_mul(1_000_000)),
            Window::Forever => None,
        }
    }

    /// The cutoff for this window at `now_us`: records with event time strictly
    /// before it are expired. `None` when nothing ever expires.
    pub fn cutoff(self, now_us: i64) -> Option<i64> {
        self.micros().map(|w| now_us.saturating_sub(w))
    }
}

impl FromStr for Window {
    type Err = WindowError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |why| WindowError {
            input: s.to_string(),
            why,
        };
        let t = s.trim();
        if t.eq_ignore_ascii_case("forever") {
            return Ok(Window::Forever);
        }
        let split = t
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(|| err("missing unit"))?;
        let (num, unit) = t.split_at(split);
        if num.is_empty() {
            return Err(err("missing number"));
        }
        let n: u64 = num.parse().map_err(|_| err("number too large"))?;
        let mult = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            "w" => 7 * 86_400,
            "y" => 365 * 86_400,
            _ => return Err(err("unknown unit")),
        };
        let secs = n
            .checked_mul(mult)
            // Spans are used in microseconds: beyond that they mean nothing.
            .filter(|s| *s <= i64::MAX as u64 / 1_000_000)
            .ok_or_else(|| err("number too large"))?;
        if secs == 0 {
            return Err(err("window must be positive"));
        }
        Ok(Window::Span(secs))
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Window::Forever => f.write_str("forever"),
            Window::Span(s) => {
                for (unit, m) in [("w", 7 * 86_400), ("d", 86_400), ("h", 3600), ("m", 60)] {
                    if s % m == 0 {
                        return write!(f, "{}{unit}", s / m);
                    }
                }
                write!(f, "{s}s")
            }
        }
    }
}

impl Serialize for Window {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Window {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_parse_in_every_unit_and_print_back() {
        for (s, secs) in [
            ("30d", 30 * 86_400),
            ("12h", 43_200),
            ("90m", 5400),
            ("45s", 45),
            ("2w", 1_209_600),
        ] {
            let w: Window = s.parse().unwrap();
            assert_eq!(w, Window::Span(secs));
            assert_eq!(w.to_string(), s);
        }
        assert_eq!("forever".parse::<Window>().unwrap(), Window::Forever);
        // A year is 365 days (and prints as such).
        assert_eq!("1y".parse::<Window>().unwrap(), Window::Span(365 * 86_400));
        assert_eq!("2y".parse::<Window>().unwrap().to_string(), "730d");
        // Spans used in microseconds: beyond ~292,000 years they are refused.
        assert!("999999999d".parse::<Window>().is_err());
        assert!("290000y".parse::<Window>().is_ok());
    }

    #[test]
    fn bad_windows_are_refused_with_the_input_named() {
        for s in ["", "30", "d", "30x", "0d", "-1d", "99999999999999999999d"] {
            let e = s.parse::<Window>().unwrap_err().to_string();
            assert!(e.contains(&format!("`{s}`")), "{e}");
        }
    }

    #[test]
    fn cutoff_is_now_minus_window() {
        let w: Window = "1d".parse().unwrap();
        assert_eq!(w.cutoff(100 * 86_400_000_000), Some(99 * 86_400_000_000));
        assert_eq!(Window::Forever.cutoff(5), None);
    }
}

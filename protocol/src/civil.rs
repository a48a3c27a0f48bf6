//! The one calendar of felhom: Unix seconds to and from the proleptic Gregorian calendar in
//! UTC, with no time-zone database and no dependency (Howard Hinnant's `days_from_civil` and
//! `civil_from_days`, which count in eras of 400 years and so are exact for every date).
//!
//! Who renders what from it:
//!
//! | Output | Format | Where |
//! |---|---|---|
//! | helper log lines (stderr) | `2025-12-02T00:02:03.456789Z` ([`DateTime::date`], [`DateTime::time`]) | `felhom_helper::logging` |
//! | agent tables, certificate warnings | `2025-12-02 00:02:03` ([`DateTime`]'s `Display`) | `felhom_agent::cli::output::utc`, `felhom_agent::pve::certexpiry` |
//! | certificate `notAfter` parsing | [`days_from_civil`], [`days_in_month`] | `felhom_agent::pve::certexpiry` |
//! | the simulator's archive names, task logs, `Expires` | from the fields of [`DateTime`] | `felhom_tests::pve_sim` |

use std::fmt;

/// Seconds in a day.
const DAY: i64 = 86_400;

/// Days from 1970-01-01 to year `y`, month `m` (1–12), day `d` of the proleptic Gregorian
/// calendar (negative before 1970). `m` and `d` are not checked: pass a valid date (see
/// [`days_in_month`]).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let (m, d) = (i64::from(m), i64::from(d));
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date (year, month 1–12, day 1–31) `days` days after 1970-01-01.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    // Both are small and positive by construction (1..=31, 1..=12).
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Whether `y` is a leap year of the Gregorian calendar.
pub fn is_leap_year(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

/// The number of days of month `m` (1–12) of year `y`; 0 for a month outside 1–12.
pub fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if is_leap_year(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        _ => 0,
    }
}

/// A UTC date and time of day, to the second. `Display` writes `YYYY-MM-DD HH:MM:SS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateTime {
    /// The year (proleptic Gregorian; may be before 1970).
    pub year: i64,
    /// The month, 1–12.
    pub month: u32,
    /// The day of the month, 1–31.
    pub day: u32,
    /// The hour, 0–23.
    pub hour: u32,
    /// The minute, 0–59.
    pub minute: u32,
    /// The second, 0–59.
    pub second: u32,
}

impl DateTime {
    /// The UTC date and time of Unix second `secs` (negative: before 1970).
    pub fn from_unix(secs: i64) -> DateTime {
        let (year, month, day) = civil_from_days(secs.div_euclid(DAY));
        // Below 86,400, so it fits.
        let s = secs.rem_euclid(DAY) as u32;
        DateTime {
            year,
            month,
            day,
            hour: s / 3600,
            minute: s / 60 % 60,
            second: s % 60,
        }
    }

    /// The UTC date and time of Unix second `secs` (a `u64` from a clock; past `i64::MAX` the
    /// latest representable second).
    pub fn from_unix_u64(secs: u64) -> DateTime {
        DateTime::from_unix(i64::try_from(secs).unwrap_or(i64::MAX))
    }

    /// Unix seconds of this date and time.
    pub fn to_unix(self) -> i64 {
        days_from_civil(self.year, self.month, self.day) * DAY
            + i64::from(self.hour) * 3600
            + i64::from(self.minute) * 60
            + i64::from(self.second)
    }

    /// `YYYY-MM-DD`.
    pub fn date(&self) -> String {
        format!("{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }

    /// `HH:MM:SS`.
    pub fn time(&self) -> String {
        format!("{:02}:{:02}:{:02}", self.hour, self.minute, self.second)
    }

    /// The day of the week, 0 = Sunday … 6 = Saturday.
    pub fn weekday(&self) -> u32 {
        // 1970-01-01 was a Thursday (4).
        (days_from_civil(self.year, self.month, self.day) + 4).rem_euclid(7) as u32
    }
}

impl fmt::Display for DateTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.date(), self.time())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        // The pins of the former copies (agent output, certificate warnings, helper log
        // timestamps, the simulator's stamps).
        for (secs, want) in [
            (0, "1970-01-01 00:00:00"),
            (1_706_702_400, "2024-01-31 12:00:00"),
            (951_782_400, "2000-02-29 00:00:00"),
            (1_764_633_723, "2025-12-02 00:02:03"),
            (4_102_444_799, "2099-12-31 23:59:59"),
            (-1, "1969-12-31 23:59:59"),
            (-62_135_596_800, "0001-01-01 00:00:00"),
            (253_402_300_799, "9999-12-31 23:59:59"),
        ] {
            assert_eq!(DateTime::from_unix(secs).to_string(), want, "{secs}");
            assert_eq!(DateTime::from_unix(secs).to_unix(), secs, "{want}");
        }
        assert_eq!(
            DateTime::from_unix_u64(u64::MAX),
            DateTime::from_unix(i64::MAX)
        );
    }

    #[test]
    fn weekdays() {
        assert_eq!(DateTime::from_unix(0).weekday(), 4); // Thursday
        assert_eq!(DateTime::from_unix(1_706_702_400).weekday(), 3); // Wednesday
        assert_eq!(DateTime::from_unix(-86_400).weekday(), 3);
    }

    #[test]
    fn leap_years_and_month_lengths() {
        assert!(is_leap_year(2000) && is_leap_year(2024) && is_leap_year(1600));
        assert!(!is_leap_year(1900) && !is_leap_year(2100) && !is_leap_year(2023));
        assert_eq!(days_in_month(2024, 2), 29);
        assert_eq!(days_in_month(2100, 2), 28);
        assert_eq!(days_in_month(2023, 4), 30);
        assert_eq!(days_in_month(2023, 12), 31);
        assert_eq!(days_in_month(2023, 13), 0);
    }

    /// Every day from 1600 to 2400 (two full eras and their borders) maps to a valid date
    /// and back, and consecutive days are consecutive dates.
    #[test]
    fn days_and_dates_round_trip_across_eras() {
        let first = days_from_civil(1600, 1, 1);
        let last = days_from_civil(2400, 12, 31);
        let mut prev = civil_from_days(first - 1);
        for days in first..=last {
            let (y, m, d) = civil_from_days(days);
            assert!((1..=12).contains(&m) && d >= 1 && d <= days_in_month(y, m));
            assert_eq!(days_from_civil(y, m, d), days);
            let next_of_prev = if prev.2 < days_in_month(prev.0, prev.1) {
                (prev.0, prev.1, prev.2 + 1)
            } else if prev.1 < 12 {
                (prev.0, prev.1 + 1, 1)
            } else {
                (prev.0 + 1, 1, 1)
            };
            assert_eq!((y, m, d), next_of_prev);
            prev = (y, m, d);
        }
    }
}

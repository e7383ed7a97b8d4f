//! When jobs fire: cron expressions read in a configured time zone.
//!
//! Expressions have seconds first, as the `cron` crate reads them
//! (`sec min hour day-of-month month day-of-week [year]`); a classic
//! five-field crontab line is accepted too and fires at second 0. The time
//! zone is a fixed offset from UTC (`UTC`, `+05:30`, `-08:00`): bluetick
//! does not ship the tz database, so a zone with daylight saving needs its
//! offset changed twice a year (see docs/operations.md).
//!
//! Each tick has a *slot*: its planned fire time in Unix milliseconds.
//! Every server computes the same slots, which is what lets them agree on
//! who runs a tick (see `store::job_runs`).

use chrono::{DateTime, FixedOffset, TimeZone, Utc};
use std::str::FromStr;

use crate::JobError;

/// A parsed schedule in its time zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    expr: String,
    cron: cron::Schedule,
    zone: FixedOffset,
}

impl Schedule {
    /// Parses `expr` (6 or 7 fields, or a 5-field crontab line) to be read
    /// in `zone`.
    pub fn parse(expr: &str, zone: FixedOffset) -> Result<Schedule, JobError> {
        let fields = expr.split_whitespace().count();
        let full = if fields == 5 {
            format!("0 {expr}")
        } else {
            expr.to_owned()
        };
        let cron = cron::Schedule::from_str(&full).map_err(|e| JobError::Schedule {
            expr: expr.to_owned(),
            reason: e.to_string(),
        })?;
        Ok(Schedule {
            expr: expr.to_owned(),
            cron,
            zone,
        })
    }

    /// The expression as configured.
    pub fn expr(&self) -> &str {
        &self.expr
    }

    /// The first slot strictly after `after_ms` (Unix ms), if any.
    pub fn next_after(&self, after_ms: i64) -> Option<i64> {
        let after: DateTime<FixedOffset> = Utc
            .timestamp_millis_opt(after_ms)
            .single()?
            .with_timezone(&self.zone);
        self.cron
            .after(&after)
            .next()
            .map(|at| at.timestamp_millis())
    }
}

/// Reads a time zone setting: `UTC` (or `Z`), or a fixed offset such as
/// `+05:30`, `-08:00`, `UTC+1`.
pub fn parse_zone(text: &str) -> Result<FixedOffset, JobError> {
    let bad = |reason: &str| JobError::Schedule {
        expr: text.to_owned(),
        reason: format!("{reason}; use UTC or an offset like +05:30"),
    };
    let trimmed = text.trim();
    let offset = trimmed
        .strip_prefix("UTC")
        .or_else(|| trimmed.strip_prefix("utc"))
        .unwrap_or(trimmed);
    if offset.is_empty() || offset == "Z" {
        return Ok(FixedOffset::east_opt(0).expect("zero offset"));
    }
    let (sign, rest) = match offset.split_at(1) {
        ("+", rest) => (1, rest),
        ("-", rest) => (-1, rest),
        _ => return Err(bad("not a time zone")),
    };
    let (hours, minutes) = rest.split_once(':').unwrap_or((rest, "0"));
    let hours: i32 = hours.parse().map_err(|_| bad("bad hours"))?;
    let minutes: i32 = minutes.parse().map_err(|_| bad("bad minutes"))?;
    if hours > 14 || minutes > 59 {
        return Err(bad("offset out of range"));
    }
    FixedOffset::east_opt(sign * (hours * 3600 + minutes * 60))
        .ok_or_else(|| bad("offset out of range"))
}

/// A Unix ms time for people: `2026-11-28T02:00:00.000Z`.
pub fn format_ms(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_else(|| ms.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(text: &str) -> i64 {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .timestamp_millis()
    }

    #[test]
    fn the_nightly_backup_fires_at_two_in_the_configured_zone() {
        let utc = Schedule::parse("0 0 2 * * *", parse_zone("UTC").unwrap()).unwrap();
        assert_eq!(
            utc.next_after(ms("2026-11-28T07:00:00Z")),
            Some(ms("2026-11-29T02:00:00Z"))
        );
        let india = Schedule::parse("0 0 2 * * *", parse_zone("+05:30").unwrap()).unwrap();
        assert_eq!(
            india.next_after(ms("2026-11-28T07:00:00Z")),
            Some(ms("2026-11-29T02:00:00+05:30"))
        );
    }

    #[test]
    fn five_field_crontab_lines_fire_at_second_zero() {
        let hourly = Schedule::parse("0 * * * *", parse_zone("UTC").unwrap()).unwrap();
        assert_eq!(
            hourly.next_after(ms("2026-11-28T07:10:05Z")),
            Some(ms("2026-11-28T08:00:00Z"))
        );
    }

    #[test]
    fn bad_expressions_and_zones_are_errors() {
        assert!(Schedule::parse("every day", parse_zone("UTC").unwrap()).is_err());
        assert!(parse_zone("Europe/Paris").is_err());
        assert!(parse_zone("+25:00").is_err());
        assert_eq!(parse_zone("UTC-8").unwrap().local_minus_utc(), -8 * 3600);
    }
}

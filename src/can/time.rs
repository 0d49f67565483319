//! Calendar arithmetic for IPNS validity times: the reference server's text format, RFC 3339
//! parsing, and "plus a month" / "plus ten years" as the reference server counts them.

const MS_PER_DAY: i64 = 86_400_000;

/// A UTC calendar date and time of day.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Civil {
    year: i64,
    month: u32,
    day: u32,
    ms_of_day: i64,
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month = i64::from(month);
    let day_of_year = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

fn civil_from_unix_ms(unix_ms: i64) -> Civil {
    let days = unix_ms.div_euclid(MS_PER_DAY);
    let ms_of_day = unix_ms.rem_euclid(MS_PER_DAY);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    Civil {
        year,
        month: u32::try_from(month).unwrap_or(1),
        day: u32::try_from(day).unwrap_or(1),
        ms_of_day,
    }
}

fn unix_ms_of(civil: Civil) -> i64 {
    days_from_civil(civil.year, civil.month, civil.day) * MS_PER_DAY + civil.ms_of_day
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Adds calendar months, keeping the day of month unless the target month is shorter
/// (31 January + 1 month = 28 or 29 February), as .NET's `AddMonths` does.
pub(crate) fn add_months(unix_ms: i64, months: u32) -> i64 {
    let civil = civil_from_unix_ms(unix_ms);
    let index = civil.year * 12 + i64::from(civil.month - 1) + i64::from(months);
    let year = index.div_euclid(12);
    let month = u32::try_from(index.rem_euclid(12)).unwrap_or(0) + 1;
    unix_ms_of(Civil {
        year,
        month,
        day: civil.day.min(days_in_month(year, month)),
        ms_of_day: civil.ms_of_day,
    })
}

/// `unix_ms` as the reference server writes validity times: `yyyy-MM-ddTHH:mm:ss.fffZ`.
pub fn format_validity(unix_ms: i64) -> String {
    let civil = civil_from_unix_ms(unix_ms);
    let ms = civil.ms_of_day;
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        civil.year,
        civil.month,
        civil.day,
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}

/// Parses an RFC 3339 date-time (`2030-01-31T12:00:00.000Z`, `…+02:00`, any fraction) to ms
/// since the epoch; `None` when it is not one.
pub(crate) fn parse_rfc3339(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    let number = |from: usize, len: usize| -> Option<i64> {
        let digits = bytes.get(from..from + len)?;
        digits.iter().try_fold(0i64, |n, &d| {
            d.is_ascii_digit().then(|| n * 10 + i64::from(d - b'0'))
        })
    };
    let separators = [(4, b'-'), (7, b'-'), (13, b':'), (16, b':')];
    if separators
        .iter()
        .any(|&(at, sep)| bytes.get(at) != Some(&sep))
        || !matches!(bytes.get(10), Some(b'T' | b't'))
    {
        return None;
    }
    let (year, month, day) = (number(0, 4)?, number(5, 2)?, number(8, 2)?);
    let (hour, minute, second) = (number(11, 2)?, number(14, 2)?, number(17, 2)?);
    let month = u32::try_from(month).ok().filter(|m| (1..=12).contains(m))?;
    let day = u32::try_from(day)
        .ok()
        .filter(|&d| d >= 1 && d <= days_in_month(year, month))?;
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut at = 19;
    let mut ms = 0;
    if bytes.get(at) == Some(&b'.') {
        let digits = bytes[at + 1..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        if digits == 0 {
            return None;
        }
        ms = number(at + 1, digits.min(3))? * [100, 10, 1][digits.min(3) - 1];
        at += 1 + digits;
    }
    let offset_minutes = match bytes.get(at..)? {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let hours = number(at + 1, 2)?;
            let minutes = number(at + 4, 2)?;
            if hours > 23 || minutes > 59 {
                return None;
            }
            let offset = hours * 60 + minutes;
            if *sign == b'-' { -offset } else { offset }
        }
        _ => return None,
    };
    let ms_of_day = ((hour * 60 + minute) * 60 + second) * 1000 + ms;
    Some(
        unix_ms_of(Civil {
            year,
            month,
            day,
            ms_of_day,
        }) - offset_minutes * 60_000,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_the_reference_server() {
        assert_eq!(format_validity(0), "1970-01-01T00:00:00.000Z");
        // Appendix B.2's validity.
        let at = parse_rfc3339("2026-12-22T00:00:00.000Z").expect("valid");
        assert_eq!(format_validity(at), "2026-12-22T00:00:00.000Z");
        assert_eq!(
            format_validity(1_234_567_890_123),
            "2009-02-13T23:31:30.123Z"
        );
    }

    #[test]
    fn a_month_later_clamps_the_day() {
        let jan31 = parse_rfc3339("2028-01-31T10:00:00Z").expect("valid");
        assert_eq!(
            format_validity(add_months(jan31, 1)),
            "2028-02-29T10:00:00.000Z"
        );
        let dec15 = parse_rfc3339("2026-12-15T00:00:00.5Z").expect("valid");
        assert_eq!(
            format_validity(add_months(dec15, 1)),
            "2027-01-15T00:00:00.500Z"
        );
        let leap = parse_rfc3339("2028-02-29T00:00:00Z").expect("valid");
        assert_eq!(
            format_validity(add_months(leap, 120)),
            "2038-02-28T00:00:00.000Z"
        );
    }

    #[test]
    fn parses_offsets_and_fractions_and_refuses_the_rest() {
        let utc = parse_rfc3339("2030-01-31T12:00:00.000Z");
        assert_eq!(parse_rfc3339("2030-01-31T14:30:00+02:30"), utc);
        assert_eq!(parse_rfc3339("2030-01-31t12:00:00.000000000z"), utc);
        assert_eq!(
            parse_rfc3339("2123-05-01T08:00:00.123456789Z").map(|ms| ms % 1000),
            Some(123)
        );
        for bad in [
            "",
            "2030-01-31",
            "2030-01-31 12:00:00Z",
            "2030-02-30T12:00:00Z",
            "2030-13-01T12:00:00Z",
            "2030-01-31T24:00:00Z",
            "2030-01-31T12:00:00",
            "2030-01-31T12:00:00.Z",
            "2030-01-31T12:00:00+0200",
            "２030-01-31T12:00:00Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn civil_round_trip_over_four_centuries() {
        let mut day = -200_000i64;
        while day < 200_000 {
            let ms = day * MS_PER_DAY + 12_345;
            assert_eq!(unix_ms_of(civil_from_unix_ms(ms)), ms);
            day += 97;
        }
    }
}

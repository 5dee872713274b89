//! The one timestamp of every built file: `SOURCE_DATE_EPOCH`.

use std::fmt;

/// Seconds since 1970-01-01 00:00:00 UTC, the time stamped on every file
/// a build writes, so that the same inputs give the same bytes
/// (the reproducible-builds SOURCE_DATE_EPOCH specification).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Epoch(pub u64);

/// Why `SOURCE_DATE_EPOCH` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("SOURCE_DATE_EPOCH={value:?} is not a count of seconds since 1970 (write e.g. 1700000000)")]
pub struct EpochError {
    pub value: String,
}

impl Epoch {
    /// `SOURCE_DATE_EPOCH` from the environment, `None` when unset.
    pub fn from_env() -> Result<Option<Epoch>, EpochError> {
        match std::env::var("SOURCE_DATE_EPOCH") {
            Ok(v) => v
                .trim()
                .parse()
                .map(|n| Some(Epoch(n)))
                .map_err(|_| EpochError { value: v }),
            Err(_) => Ok(None),
        }
    }

    /// The FAT date and time (UTC: FAT has no time zone), clamped to the
    /// range FAT can hold (1980-01-01 to 2107-12-31). FAT counts seconds in
    /// twos, so odd seconds round down.
    pub fn dos(self) -> DosTime {
        const MIN: u64 = 315_532_800; // 1980-01-01T00:00:00Z
        const MAX: u64 = 4_354_819_198; // 2107-12-31T23:59:58Z
        let t = self.0.clamp(MIN, MAX);
        let (y, m, d) = civil_from_days(t / 86_400);
        let s = t % 86_400;
        DosTime {
            date: (((y - 1980) as u16) << 9) | ((m as u16) << 5) | d as u16,
            time: (((s / 3600) as u16) << 11)
                | ((((s / 60) % 60) as u16) << 5)
                | ((s % 60) / 2) as u16,
        }
    }
}

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A FAT directory entry's date and time fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DosTime {
    pub date: u16,
    pub time: u16,
}

/// Year, month, day of a count of days since 1970-01-01 (proleptic
/// Gregorian; H. Hinnant's `civil_from_days`, for days ≥ 0).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ymdhms(t: DosTime) -> (u16, u16, u16, u16, u16, u16) {
        (
            1980 + (t.date >> 9),
            (t.date >> 5) & 15,
            t.date & 31,
            t.time >> 11,
            (t.time >> 5) & 63,
            (t.time & 31) * 2,
        )
    }

    #[test]
    fn converts_and_clamps() {
        // `date -u -d @1700000000`: Tue Nov 14 22:13:20 UTC 2023
        assert_eq!(
            ymdhms(Epoch(1_700_000_000).dos()),
            (2023, 11, 14, 22, 13, 20)
        );
        // 2000-02-29T23:59:59Z, a leap day; the odd second rounds down.
        assert_eq!(ymdhms(Epoch(951_868_799).dos()), (2000, 2, 29, 23, 59, 58));
        assert_eq!(ymdhms(Epoch(0).dos()), (1980, 1, 1, 0, 0, 0));
        assert_eq!(ymdhms(Epoch(u64::MAX).dos()), (2107, 12, 31, 23, 59, 58));
    }
}

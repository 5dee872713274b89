//! Typed units: byte counts, sector sizes and logical block addresses.
//!
//! Sizes in profiles are strings such as `"8GiB"`; binary suffixes (`KiB`,
//! `MiB`, `GiB`, `TiB`, and the short `K`, `M`, `G`, `T`) count in powers of
//! 1024, decimal ones (`kB`, `MB`, `GB`, `TB`) in powers of 1000.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// One mebibyte: the alignment of every partition the plan lays out.
pub const MIB: u64 = 1 << 20;

/// A count of bytes.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Bytes(pub u64);

impl Bytes {
    pub const ZERO: Bytes = Bytes(0);

    pub const fn mib(n: u64) -> Bytes {
        Bytes(n * MIB)
    }

    pub const fn get(self) -> u64 {
        self.0
    }

    /// Rounds up to the next multiple of `align` bytes (`align` > 0).
    pub fn align_up(self, align: u64) -> Option<Bytes> {
        self.0.checked_next_multiple_of(align).map(Bytes)
    }

    pub fn checked_add(self, other: Bytes) -> Option<Bytes> {
        self.0.checked_add(other.0).map(Bytes)
    }

    pub fn checked_sub(self, other: Bytes) -> Option<Bytes> {
        self.0.checked_sub(other.0).map(Bytes)
    }

    pub fn checked_mul(self, n: u64) -> Option<Bytes> {
        self.0.checked_mul(n).map(Bytes)
    }
}

/// Why a size string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{input}` is not a size: {reason} (write e.g. \"512MiB\", \"8GiB\" or \"2TB\")")]
pub struct ParseBytesError {
    input: String,
    reason: &'static str,
}

impl FromStr for Bytes {
    type Err = ParseBytesError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| ParseBytesError {
            input: s.to_owned(),
            reason,
        };
        let t = s.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (digits, unit) = t.split_at(split);
        if digits.is_empty() {
            return Err(err("it does not start with a number"));
        }
        let n: u64 = digits.parse().map_err(|_| err("the number is too large"))?;
        let mult: u64 = match unit.trim() {
            "" | "B" => 1,
            "K" | "KiB" => 1 << 10,
            "M" | "MiB" => 1 << 20,
            "G" | "GiB" => 1 << 30,
            "T" | "TiB" => 1 << 40,
            "kB" | "KB" => 1_000,
            "MB" => 1_000_000,
            "GB" => 1_000_000_000,
            "TB" => 1_000_000_000_000,
            _ => {
                return Err(err(
                    "unknown unit (use B, KiB, MiB, GiB, TiB, kB, MB, GB or TB)",
                ));
            }
        };
        n.checked_mul(mult)
            .map(Bytes)
            .ok_or_else(|| err("the size is too large"))
    }
}

impl fmt::Display for Bytes {
    /// Shows the largest binary unit that divides the value exactly, so that
    /// what is printed parses back to the same number.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(u64, &str); 4] = [
            (1 << 40, "TiB"),
            (1 << 30, "GiB"),
            (1 << 20, "MiB"),
            (1 << 10, "KiB"),
        ];
        if self.0 == 0 {
            return f.write_str("0B");
        }
        for (mult, name) in UNITS {
            if self.0 % mult == 0 {
                return write!(f, "{}{}", self.0 / mult, name);
            }
        }
        write!(f, "{}B", self.0)
    }
}

/// The logical sector size of the SAN: the unit of every LBA in the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "u32", try_from = "u32")]
pub enum SectorSize {
    B512,
    B4096,
}

impl SectorSize {
    pub const fn bytes(self) -> u64 {
        match self {
            SectorSize::B512 => 512,
            SectorSize::B4096 => 4096,
        }
    }

    /// The LBA holding byte `offset` (which must be sector aligned).
    pub const fn lba_of(self, offset: Bytes) -> Lba {
        Lba(offset.0 / self.bytes())
    }

    pub const fn offset_of(self, lba: Lba) -> Bytes {
        Bytes(lba.0 * self.bytes())
    }
}

impl From<SectorSize> for u32 {
    fn from(s: SectorSize) -> u32 {
        s.bytes() as u32
    }
}

impl TryFrom<u32> for SectorSize {
    type Error = String;

    fn try_from(n: u32) -> Result<Self, Self::Error> {
        match n {
            512 => Ok(SectorSize::B512),
            4096 => Ok(SectorSize::B4096),
            other => Err(format!("sector size {other} is not 512 or 4096")),
        }
    }
}

impl fmt::Display for SectorSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.bytes())
    }
}

/// A logical block address, in units of the plan's [`SectorSize`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Lba(pub u64);

impl fmt::Display for Lba {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sizes_in_every_unit() {
        let cases: &[(&str, u64)] = &[
            ("512", 512),
            ("512B", 512),
            ("4K", 4096),
            ("4KiB", 4096),
            ("256MiB", 256 << 20),
            ("8GiB", 8 << 30),
            ("8 GiB", 8 << 30),
            ("8G", 8 << 30),
            ("2TB", 2_000_000_000_000),
            ("1TiB", 1 << 40),
            ("3MB", 3_000_000),
        ];
        for (text, want) in cases {
            assert_eq!(text.parse::<Bytes>(), Ok(Bytes(*want)), "{text}");
        }
    }

    #[test]
    fn refuses_what_is_not_a_size() {
        for bad in [
            "",
            "GiB",
            "8 parsecs",
            "-1GiB",
            "1.5GiB",
            "99999999999999999999",
            "20000000TiB",
        ] {
            assert!(bad.parse::<Bytes>().is_err(), "{bad} parsed");
        }
    }

    #[test]
    fn display_round_trips() {
        for n in [
            0,
            1,
            512,
            4096,
            3 << 20,
            5 << 30,
            (1 << 40) + (1 << 20),
            12345,
        ] {
            let b = Bytes(n);
            assert_eq!(b.to_string().parse::<Bytes>(), Ok(b));
        }
    }
}

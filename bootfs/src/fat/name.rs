//! File names on FAT: the 8.3 short name every entry has, and the long
//! (VFAT) name entries that carry any other name.
//!
//! Format: Microsoft FAT specification (2005), sections 6 and 7.

/// Characters a short name may hold besides `A-Z` and `0-9` (FAT spec 6.1;
/// space is left out: it is legal but confuses every tool).
const SHORT_EXTRA: &[u8] = b"!#$%&'()-@^_`{}~";
/// Characters no long name may hold (FAT spec 7.1).
const LONG_FORBIDDEN: &[char] = &['"', '*', '/', ':', '<', '>', '?', '\\', '|'];
/// UTF-16 units a long name holds at most.
pub const LONG_MAX: usize = 255;
/// UTF-16 units one long-name entry holds.
const UNITS_PER_ENTRY: usize = 13;

/// Why a name cannot be stored.
pub type NameError = &'static str;

/// Checks a long name: what Windows, Linux and UEFI firmware all accept.
pub fn check_long(name: &str) -> Result<(), NameError> {
    if name.is_empty() || name == "." || name == ".." {
        return Err("empty, `.` and `..` are not file names");
    }
    if name.encode_utf16().count() > LONG_MAX {
        return Err("longer than 255 UTF-16 units");
    }
    if name.chars().any(|c| c < ' ' || LONG_FORBIDDEN.contains(&c)) {
        return Err("holds a control character or one of \" * / : < > ? \\ |");
    }
    if name.starts_with(' ') || name.ends_with(' ') || name.ends_with('.') {
        return Err("starts or ends with a space, or ends with a dot");
    }
    Ok(())
}

fn short_char(b: u8) -> bool {
    b.is_ascii_uppercase() || b.is_ascii_digit() || SHORT_EXTRA.contains(&b)
}

/// The 11-byte short name when `name` is already a valid upper-case 8.3
/// name, which then needs no long-name entries.
pub fn exact_short(name: &str) -> Option<[u8; 11]> {
    let b = name.as_bytes();
    let (base, ext) = match name.rfind('.') {
        Some(i) => (&b[..i], &b[i + 1..]),
        None => (b, &b[..0]),
    };
    let ok = (1..=8).contains(&base.len())
        && ext.len() <= 3
        && !(name.contains('.') && ext.is_empty())
        && base.iter().chain(ext).all(|c| short_char(*c));
    ok.then(|| pack(base, ext))
}

fn pack(base: &[u8], ext: &[u8]) -> [u8; 11] {
    let mut out = [b' '; 11];
    out[..base.len()].copy_from_slice(base);
    out[8..8 + ext.len()].copy_from_slice(ext);
    // 0xE5 marks a deleted entry; a name starting with it is stored as 0x05.
    if out[0] == 0xE5 {
        out[0] = 0x05;
    }
    out
}

/// The short name for a long name that is not itself a short name, in the
/// manner of Windows (FAT spec 7.4): upper-cased, other characters as `_`,
/// the base cut to fit a `~N` tail. `taken` says whether a candidate is in
/// use in the directory already.
pub fn generate_short(name: &str, taken: impl Fn(&[u8; 11]) -> bool) -> [u8; 11] {
    let conv = |s: &str| -> (Vec<u8>, bool) {
        let mut lossy = false;
        let mut out = Vec::new();
        for c in s.chars() {
            if c == ' ' || c == '.' {
                lossy = true;
                continue;
            }
            let u = c.to_ascii_uppercase();
            if u.is_ascii() && short_char(u as u8) {
                out.push(u as u8);
            } else {
                lossy = true;
                out.push(b'_');
            }
        }
        (out, lossy)
    };
    let trimmed = name.trim_start_matches('.');
    let (base_s, ext_s) = match trimmed.rfind('.') {
        Some(i) => (&trimmed[..i], &trimmed[i + 1..]),
        None => (trimmed, ""),
    };
    let (mut base, lossy_b) = conv(base_s);
    let (mut ext, lossy_e) = conv(ext_s);
    let lossy = lossy_b
        || lossy_e
        || trimmed.len() != name.len()
        || base.len() > 8
        || ext.len() > 3
        || base.is_empty();
    if base.is_empty() {
        base.push(b'_');
    }
    ext.truncate(3);
    if !lossy {
        // Differs from the short name only in case: Windows keeps the name.
        let plain = pack(&base, &ext);
        if !taken(&plain) {
            return plain;
        }
    }
    for n in 1u32.. {
        let tail = format!("~{n}");
        let keep = (8 - tail.len()).min(base.len());
        let mut b = base[..keep].to_vec();
        b.extend_from_slice(tail.as_bytes());
        let candidate = pack(&b, &ext);
        if !taken(&candidate) {
            return candidate;
        }
    }
    unreachable!("a directory holds fewer than 65536 entries, so some ~N is free")
}

/// The checksum of a short name that ties long-name entries to it (FAT
/// spec 7.2).
pub fn checksum(short: &[u8; 11]) -> u8 {
    short.iter().fold(0u8, |sum, b| {
        ((sum & 1) << 7).wrapping_add(sum >> 1).wrapping_add(*b)
    })
}

/// Count of long-name entries `name` takes.
pub fn long_entries(name: &str) -> usize {
    name.encode_utf16().count().div_ceil(UNITS_PER_ENTRY)
}

/// The long-name entries for `name`, in the order they sit in the
/// directory (last part first), each 32 bytes.
pub fn encode_long(name: &str, short: &[u8; 11]) -> Vec<[u8; 32]> {
    let mut units: Vec<u16> = name.encode_utf16().collect();
    let n = units.len().div_ceil(UNITS_PER_ENTRY);
    // The name ends with one NUL if there is room, then 0xFFFF padding.
    if units.len() < n * UNITS_PER_ENTRY {
        units.push(0);
    }
    units.resize(n * UNITS_PER_ENTRY, 0xFFFF);
    let sum = checksum(short);
    (0..n)
        .rev()
        .map(|i| {
            let mut e = [0u8; 32];
            let last = if i == n - 1 { 0x40 } else { 0 };
            e[0] = (i as u8 + 1) | last;
            e[11] = 0x0F; // attribute: read-only | hidden | system | volume id
            e[13] = sum;
            let part = &units[i * UNITS_PER_ENTRY..(i + 1) * UNITS_PER_ENTRY];
            let slots = (1..11)
                .step_by(2)
                .chain((14..26).step_by(2))
                .chain((28..32).step_by(2));
            for (u, at) in part.iter().zip(slots) {
                e[at..at + 2].copy_from_slice(&u.to_le_bytes());
            }
            e
        })
        .collect()
}

/// Whether a long name is needed at all.
pub fn needs_long(name: &str) -> bool {
    exact_short(name).is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(b: &[u8; 11]) -> String {
        String::from_utf8_lossy(b).into_owned()
    }

    #[test]
    fn short_names() {
        assert_eq!(
            exact_short("BOOTX64.EFI").map(|b| s(&b)),
            Some("BOOTX64 EFI".into())
        );
        assert_eq!(
            exact_short("EFI").map(|b| s(&b)),
            Some("EFI        ".into())
        );
        for long in [
            "boot",
            "loader.conf",
            "A.B.C",
            "TOOLONGNAME",
            "X.",
            ".X",
            "A B",
        ] {
            assert_eq!(exact_short(long), None, "{long}");
        }
        let none = |_: &[u8; 11]| false;
        assert_eq!(s(&generate_short("syslinux.cfg", none)), "SYSLINUXCFG");
        assert_eq!(s(&generate_short("loader.conf", none)), "LOADER~1CON");
        assert_eq!(s(&generate_short("initramfs.img", none)), "INITRA~1IMG");
        assert_eq!(s(&generate_short(".hidden", none)), "HIDDEN~1   ");
        let first = generate_short("initramfs.img", none);
        let second = generate_short("initramfs.imgx", |c| *c == first);
        assert_eq!(s(&second), "INITRA~2IMG");
    }

    #[test]
    fn long_name_entries() {
        // 14 units: two entries, the second holding "x", NUL, then 0xFFFF.
        let name = "abcdefghijklmx";
        let short = generate_short(name, |_| false);
        let e = encode_long(name, &short);
        assert_eq!(e.len(), 2);
        assert_eq!(e[0][0], 0x42);
        assert_eq!(e[1][0], 0x01);
        assert_eq!(&e[0][1..7], &[b'x', 0, 0, 0, 0xFF, 0xFF]);
        assert!(e.iter().all(|x| x[11] == 0x0F && x[13] == checksum(&short)));
        assert_eq!(long_entries(name), 2);
        assert!(check_long("a:b").is_err());
        assert!(check_long("trailing.").is_err());
        assert!(check_long("fine name.conf").is_ok());
    }
}

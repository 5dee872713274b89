//! Rock Ridge (RRIP 1.10 over SUSP 1.10): POSIX names, modes and times in
//! the system-use area of each directory record, so that Linux, xorriso
//! and isolinux see `manifest.json` and `debian-bookworm.tar.gz` rather
//! than `MANIFEST.JSO;1`.
//!
//! Each record carries `PX` (mode, links, owner), `TF` (modify, access and
//! change times) and, except `.` and `..`, `NM` (the name). The root's `.`
//! record starts with `SP` (SUSP is in use) and a `CE` pointing to the one
//! continuation block that holds `ER` (which extension this is: too long
//! for the record itself).

use super::both32;

/// SUSP `SP`: "SUSP in use", with no bytes skipped (SUSP 5.3).
pub const SP: [u8; 7] = [b'S', b'P', 7, 1, 0xBE, 0xEF, 0];

const ER_ID: &[u8] = b"RRIP_1991A";
const ER_DESCRIPTOR: &[u8] =
    b"THE ROCK RIDGE INTERCHANGE PROTOCOL PROVIDES SUPPORT FOR POSIX FILE SYSTEM SEMANTICS";
const ER_SOURCE: &[u8] = b"PLEASE CONTACT DISC PUBLISHER FOR SPECIFICATION SOURCE.  SEE PUBLISHER IDENTIFIER IN PRIMARY VOLUME DESCRIPTOR FOR CONTACT INFORMATION.";

/// Length of a `CE` entry.
pub const CE_LEN: usize = 28;
/// Length of a `PX` entry (RRIP 1.10: no serial number).
pub const PX_LEN: usize = 36;
/// Length of a `TF` entry with three 7-byte times.
pub const TF_LEN: usize = 5 + 3 * 7;

pub const S_IFDIR: u32 = 0o040_000;
pub const S_IFREG: u32 = 0o100_000;

/// `ER`: the extension reference, kept in the continuation area.
pub fn er() -> Vec<u8> {
    let mut e = vec![
        b'E',
        b'R',
        0,
        1,
        ER_ID.len() as u8,
        ER_DESCRIPTOR.len() as u8,
        ER_SOURCE.len() as u8,
        1,
    ];
    e.extend_from_slice(ER_ID);
    e.extend_from_slice(ER_DESCRIPTOR);
    e.extend_from_slice(ER_SOURCE);
    e[2] = e.len() as u8;
    e
}

/// `CE`: the rest of the system-use area is `len` bytes at `block`.
pub fn ce(block: u32, offset: u32, len: u32) -> Vec<u8> {
    let mut e = vec![b'C', b'E', CE_LEN as u8, 1];
    e.extend_from_slice(&both32(block));
    e.extend_from_slice(&both32(offset));
    e.extend_from_slice(&both32(len));
    e
}

/// `PX`: POSIX mode (with the file type bits), link count, owner 0:0.
pub fn px(mode: u32, links: u32) -> Vec<u8> {
    let mut e = vec![b'P', b'X', PX_LEN as u8, 1];
    e.extend_from_slice(&both32(mode));
    e.extend_from_slice(&both32(links));
    e.extend_from_slice(&both32(0));
    e.extend_from_slice(&both32(0));
    e
}

/// `TF`: modify, access and attribute-change time, all `time`.
pub fn tf(time: &[u8; 7]) -> Vec<u8> {
    // Flags: modify (bit 1), access (bit 2), attributes (bit 3); short form.
    let mut e = vec![b'T', b'F', TF_LEN as u8, 1, 0b1110];
    for _ in 0..3 {
        e.extend_from_slice(time);
    }
    e
}

/// `NM`: the POSIX name.
pub fn nm(name: &str) -> Vec<u8> {
    let mut e = vec![b'N', b'M', (5 + name.len()) as u8, 1, 0];
    e.extend_from_slice(name.as_bytes());
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_are_what_the_headers_say() {
        for e in [
            er(),
            ce(1, 2, 3),
            px(S_IFDIR | 0o755, 2),
            tf(&[0; 7]),
            nm("a.b"),
        ] {
            assert_eq!(e[2] as usize, e.len(), "{:?}", &e[..2]);
            assert_eq!(e[3], 1);
        }
        assert_eq!(er().len(), 8 + 10 + 84 + 135);
    }
}

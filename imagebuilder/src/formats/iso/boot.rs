//! Booting an ISO image: El Torito (the boot record volume descriptor and
//! the boot catalog, with a BIOS entry for isolinux and an EFI entry for a
//! FAT image), isolinux's boot information table, and the isohybrid MBR
//! that lets the same image boot from a USB stick.
//!
//! References: "El Torito" Bootable CD-ROM Format Specification 1.0;
//! syslinux's `doc/isolinux.txt` (boot information table) and
//! `utils/isohybrid.c` (the MBR fields); UEFI 2.10 section 5.2.1 (an MBR
//! partition of type 0xEF is an EFI system partition).

use super::BLOCK;

const EL_TORITO_ID: &[u8] = b"EL TORITO SPECIFICATION";
const PLATFORM_X86: u8 = 0;
const PLATFORM_EFI: u8 = 0xEF;
const BOOTABLE: u8 = 0x88;
const NO_EMULATION: u8 = 0;
const FINAL_SECTION: u8 = 0x91;
/// isolinux.bin is loaded in 512-byte virtual sectors; 4 is one CD block,
/// the part that loads the rest itself (isolinux.txt: `-boot-load-size 4`).
pub const BIOS_LOAD_SECTORS: u16 = 4;
/// Where `isolinux.bin` keeps its boot information table, and how long it
/// is (isolinux.txt: offset 8, 56 bytes).
const INFO_TABLE: usize = 8;
const INFO_TABLE_LEN: usize = 56;
/// The checksum covers the file from this byte on.
const INFO_CHECKSUM_FROM: usize = 64;
/// isolinux.bin builds that the isohybrid MBR can start carry this at
/// byte 0x40 (isohybrid.c checks it too).
const HYBRID_MAGIC: u32 = 0x7078_c0fb;
/// The MBR's boot code area that isohdpfx.bin fills.
pub const MBR_CODE: usize = 432;

/// The boot record volume descriptor (block 17): points at the catalog.
pub fn boot_record(catalog_lba: u32) -> Vec<u8> {
    let mut d = vec![0u8; BLOCK as usize];
    d[0] = 0;
    d[1..6].copy_from_slice(b"CD001");
    d[6] = 1;
    d[7..7 + EL_TORITO_ID.len()].copy_from_slice(EL_TORITO_ID);
    d[0x47..0x4B].copy_from_slice(&catalog_lba.to_le_bytes());
    d
}

/// One boot image of the catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CatalogEntry {
    pub lba: u32,
    /// In 512-byte virtual sectors; 0 means "the firmware decides" (for an
    /// EFI image over 32 MiB, as xorriso writes it).
    pub sectors: u16,
}

/// The boot catalog: the validation entry and the default entry for BIOS
/// (when there is one), then a final section for EFI (when there is one).
pub fn catalog(bios: Option<CatalogEntry>, efi: Option<CatalogEntry>) -> Vec<u8> {
    let mut c = vec![0u8; BLOCK as usize];
    // Validation entry: the first platform is the default entry's.
    c[0] = 1;
    c[1] = if bios.is_some() {
        PLATFORM_X86
    } else {
        PLATFORM_EFI
    };
    c[30] = 0x55;
    c[31] = 0xAA;
    let sum = (0..16).fold(0u16, |s, i| {
        s.wrapping_add(u16::from_le_bytes([c[2 * i], c[2 * i + 1]]))
    });
    c[28..30].copy_from_slice(&0u16.wrapping_sub(sum).to_le_bytes());
    let entry = |e: &CatalogEntry| {
        let mut b = [0u8; 32];
        b[0] = BOOTABLE;
        b[1] = NO_EMULATION;
        b[6..8].copy_from_slice(&e.sectors.to_le_bytes());
        b[8..12].copy_from_slice(&e.lba.to_le_bytes());
        b
    };
    // The default entry must exist; an EFI-only catalog makes EFI default.
    let (default, section) = match (bios, efi) {
        (Some(b), e) => (b, e),
        (None, Some(e)) => (e, None),
        (None, None) => return c,
    };
    c[32..64].copy_from_slice(&entry(&default));
    if let Some(e) = section {
        c[64] = FINAL_SECTION;
        c[65] = PLATFORM_EFI;
        c[66..68].copy_from_slice(&1u16.to_le_bytes());
        c[96..128].copy_from_slice(&entry(&e));
    }
    c
}

/// The sector count of an EFI boot image of `len` bytes for the catalog.
pub fn efi_sectors(len: u64) -> u16 {
    u16::try_from(len.div_ceil(512)).unwrap_or(0)
}

/// Whether `loader` is an isolinux.bin the isohybrid MBR can start.
pub fn is_hybrid_loader(loader: &[u8]) -> bool {
    loader
        .get(0x40..0x44)
        .is_some_and(|m| u32::from_le_bytes([m[0], m[1], m[2], m[3]]) == HYBRID_MAGIC)
}

/// Fills isolinux's boot information table: where the primary volume
/// descriptor and the loader itself are, its length, and a checksum of its
/// bytes from 64 on (as 32-bit little-endian words).
pub fn patch_info_table(loader: &mut [u8], pvd_lba: u32, loader_lba: u32) -> bool {
    if loader.len() < INFO_CHECKSUM_FROM {
        return false;
    }
    loader[INFO_TABLE..INFO_TABLE + INFO_TABLE_LEN].fill(0);
    let sum = loader[INFO_CHECKSUM_FROM..].chunks(4).fold(0u32, |s, w| {
        let mut b = [0u8; 4];
        b[..w.len()].copy_from_slice(w);
        s.wrapping_add(u32::from_le_bytes(b))
    });
    let len = loader.len() as u32;
    for (i, v) in [pvd_lba, loader_lba, len, sum].into_iter().enumerate() {
        loader[INFO_TABLE + 4 * i..INFO_TABLE + 4 * i + 4].copy_from_slice(&v.to_le_bytes());
    }
    true
}

/// CHS of `lba` in isohybrid's geometry (64 heads, 32 sectors); past what
/// CHS can address, the conventional 0xFE 0xFF 0xFF.
fn chs(lba: u64) -> [u8; 3] {
    const HEADS: u64 = 64;
    const SECTORS: u64 = 32;
    let c = lba / (HEADS * SECTORS);
    if c > 1023 {
        return [0xFE, 0xFF, 0xFF];
    }
    let h = (lba / SECTORS) % HEADS;
    let s = lba % SECTORS + 1;
    [h as u8, (s as u8) | (((c >> 8) as u8) << 6), c as u8]
}

/// The isohybrid MBR: isohdpfx's code, the loader's place for it, a disk
/// signature, and two partitions: 1 over the whole image (type 0, active,
/// for BIOSes that want one) and 2 over the EFI image (type 0xEF, which
/// UEFI firmware boots from a USB stick).
pub fn hybrid_mbr(
    code: &[u8],
    loader_lba: u32,
    signature: u32,
    image_sectors: u64,
    efi: Option<(u64, u64)>,
) -> Vec<u8> {
    let mut m = vec![0u8; 512];
    let n = code.len().min(MBR_CODE);
    m[..n].copy_from_slice(&code[..n]);
    m[432..436].copy_from_slice(&(u64::from(loader_lba) * 4).to_le_bytes()[..4]);
    m[440..444].copy_from_slice(&signature.to_le_bytes());
    let mut part = |i: usize, active: bool, kind: u8, start: u64, count: u64| {
        let e = &mut m[446 + 16 * i..462 + 16 * i];
        e[0] = if active { 0x80 } else { 0 };
        e[1..4].copy_from_slice(&chs(start));
        e[4] = kind;
        e[5..8].copy_from_slice(&chs(start + count.max(1) - 1));
        e[8..12].copy_from_slice(&u32::try_from(start).unwrap_or(u32::MAX).to_le_bytes());
        e[12..16].copy_from_slice(&u32::try_from(count).unwrap_or(u32::MAX).to_le_bytes());
    };
    part(0, true, 0x00, 0, image_sectors);
    if let Some((start, count)) = efi {
        part(1, false, 0xEF, start, count);
    }
    m[510] = 0x55;
    m[511] = 0xAA;
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_validation_entry_sums_to_zero() {
        let c = catalog(
            Some(CatalogEntry {
                lba: 40,
                sectors: 4,
            }),
            Some(CatalogEntry {
                lba: 50,
                sectors: 0,
            }),
        );
        let sum = (0..16).fold(0u16, |s, i| {
            s.wrapping_add(u16::from_le_bytes([c[2 * i], c[2 * i + 1]]))
        });
        assert_eq!(sum, 0);
        assert_eq!(c[32], BOOTABLE);
        assert_eq!(&c[40..44], &40u32.to_le_bytes());
        assert_eq!((c[64], c[65]), (FINAL_SECTION, PLATFORM_EFI));
        assert_eq!(&c[104..108], &50u32.to_le_bytes());
    }

    #[test]
    fn chs_matches_isohybrid_geometry() {
        assert_eq!(chs(0), [0, 1, 0]);
        // xorriso's end of a 41 MiB image: head 63, sector 32, cylinder 40.
        assert_eq!(chs(83_967), [63, 32, 40]);
        assert_eq!(chs(u64::from(u32::MAX)), [0xFE, 0xFF, 0xFF]);
    }

    #[test]
    fn info_table_checksum() {
        let mut l = vec![0u8; 2048];
        l[64] = 1;
        l[2047] = 2;
        assert!(patch_info_table(&mut l, 16, 33));
        let w = |i: usize| u32::from_le_bytes(l[i..i + 4].try_into().unwrap());
        assert_eq!((w(8), w(12), w(16), w(20)), (16, 33, 2048, 1 + (2 << 24)));
    }
}

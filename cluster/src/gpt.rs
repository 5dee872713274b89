//! GPT as bytes: the encoding of a [`DiskLayout`] and the decoding of what a
//! disk holds. Pure functions over buffers; callers do the I/O. The installer
//! writes with [`encode`]; the installer's checks and the node agent read
//! with [`Header::parse`] and [`parse_entries`].
//!
//! Format: UEFI 2.10, section 5.3 (GPT) and 5.2.3 (protective MBR).

use uuid::Uuid;

use crate::layout::{DiskLayout, ENTRY_SIZE, Partition};
use crate::units::{Bytes, Lba, SectorSize};

const SIGNATURE: &[u8; 8] = b"EFI PART";
const REVISION_1_0: u32 = 0x0001_0000;
const HEADER_SIZE: u32 = 92;
/// Partition names hold 36 UTF-16 code units.
pub const NAME_UNITS: usize = 36;

/// Bytes to write at an offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    pub offset: Bytes,
    pub data: Vec<u8>,
}

/// The protective MBR, both headers and both entry arrays for `layout`, in
/// the order they should be written: backup first, then primary, then the
/// MBR, so that a crash leaves no valid-looking primary with a missing backup.
pub fn encode(layout: &DiskLayout) -> Vec<Write> {
    let s = layout.sector_size.bytes() as usize;
    let entries = encode_entries(layout);
    let entries_crc = crc32fast::hash(&entries);
    let entry_lbas = layout.entry_lbas();
    let last = layout.lbas - 1;
    let backup_entries_lba = last - entry_lbas;

    let primary = encode_header(layout, 1, last, 2, entries_crc, s);
    let backup = encode_header(layout, last, 1, backup_entries_lba, entries_crc, s);
    let at = |lba: u64| layout.sector_size.offset_of(Lba(lba));
    vec![
        Write {
            offset: at(backup_entries_lba),
            data: entries.clone(),
        },
        Write {
            offset: at(last),
            data: backup,
        },
        Write {
            offset: at(2),
            data: entries,
        },
        Write {
            offset: at(1),
            data: primary,
        },
        Write {
            offset: Bytes(0),
            data: protective_mbr(layout.lbas, s),
        },
    ]
}

/// One sector: a protective MBR with one 0xEE partition over the disk. The
/// first 440 bytes (boot code) are zero; a BIOS boot loader such as
/// syslinux's `gptmbr.bin` may be written there.
pub fn protective_mbr(lbas: u64, sector: usize) -> Vec<u8> {
    let mut m = vec![0u8; sector];
    let e = &mut m[446..462];
    e[0] = 0x00; // not active: UEFI 2.10 table 5.4 asks for 0
    e[1..4].copy_from_slice(&[0x00, 0x02, 0x00]); // CHS of LBA 1
    e[4] = 0xEE;
    e[5..8].copy_from_slice(&[0xFF, 0xFF, 0xFF]);
    e[8..12].copy_from_slice(&1u32.to_le_bytes());
    let size = u32::try_from(lbas - 1).unwrap_or(u32::MAX);
    e[12..16].copy_from_slice(&size.to_le_bytes());
    m[510] = 0x55;
    m[511] = 0xAA;
    m
}

fn encode_entries(layout: &DiskLayout) -> Vec<u8> {
    let mut out = vec![0u8; layout.entries as usize * ENTRY_SIZE as usize];
    for p in &layout.partitions {
        let i = (p.number - 1) as usize * ENTRY_SIZE as usize;
        let e = &mut out[i..i + ENTRY_SIZE as usize];
        e[0..16].copy_from_slice(&p.type_guid.to_bytes_le());
        e[16..32].copy_from_slice(&p.guid.to_bytes_le());
        e[32..40].copy_from_slice(&p.first_lba.0.to_le_bytes());
        e[40..48].copy_from_slice(&p.last_lba.0.to_le_bytes());
        e[48..56].copy_from_slice(&p.attributes.to_le_bytes());
        for (j, unit) in p.label.encode_utf16().take(NAME_UNITS).enumerate() {
            e[56 + 2 * j..58 + 2 * j].copy_from_slice(&unit.to_le_bytes());
        }
    }
    out
}

fn encode_header(
    layout: &DiskLayout,
    my_lba: u64,
    alternate: u64,
    entries_lba: u64,
    entries_crc: u32,
    sector: usize,
) -> Vec<u8> {
    let mut h = vec![0u8; sector];
    h[0..8].copy_from_slice(SIGNATURE);
    h[8..12].copy_from_slice(&REVISION_1_0.to_le_bytes());
    h[12..16].copy_from_slice(&HEADER_SIZE.to_le_bytes());
    h[24..32].copy_from_slice(&my_lba.to_le_bytes());
    h[32..40].copy_from_slice(&alternate.to_le_bytes());
    h[40..48].copy_from_slice(&layout.first_usable.0.to_le_bytes());
    h[48..56].copy_from_slice(&layout.last_usable.0.to_le_bytes());
    h[56..72].copy_from_slice(&layout.disk_guid.to_bytes_le());
    h[72..80].copy_from_slice(&entries_lba.to_le_bytes());
    h[80..84].copy_from_slice(&layout.entries.to_le_bytes());
    h[84..88].copy_from_slice(&(ENTRY_SIZE as u32).to_le_bytes());
    h[88..92].copy_from_slice(&entries_crc.to_le_bytes());
    let crc = crc32fast::hash(&h[..HEADER_SIZE as usize]);
    h[16..20].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Why bytes are not a valid GPT.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GptError {
    #[error("no GPT signature")]
    NoSignature,
    #[error("GPT header is malformed: {0}")]
    Malformed(&'static str),
    #[error("GPT header checksum does not match")]
    HeaderCrc,
    #[error("GPT partition entries checksum does not match")]
    EntriesCrc,
}

/// A decoded GPT header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub my_lba: u64,
    pub alternate_lba: u64,
    pub first_usable: u64,
    pub last_usable: u64,
    pub disk_guid: Uuid,
    pub entries_lba: u64,
    pub entries: u32,
    pub entry_size: u32,
    pub entries_crc: u32,
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

fn u64_at(b: &[u8], i: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[i..i + 8]);
    u64::from_le_bytes(a)
}

fn guid_at(b: &[u8], i: usize) -> Uuid {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[i..i + 16]);
    Uuid::from_bytes_le(a)
}

impl Header {
    /// Decodes and checks a header sector (at least 92 bytes).
    pub fn parse(sector: &[u8]) -> Result<Header, GptError> {
        if sector.len() < HEADER_SIZE as usize || &sector[0..8] != SIGNATURE {
            return Err(GptError::NoSignature);
        }
        let size = u32_at(sector, 12) as usize;
        if !(HEADER_SIZE as usize..=sector.len()).contains(&size) {
            return Err(GptError::Malformed("header size out of range"));
        }
        let mut copy = sector[..size].to_vec();
        copy[16..20].fill(0);
        if crc32fast::hash(&copy) != u32_at(sector, 16) {
            return Err(GptError::HeaderCrc);
        }
        let h = Header {
            my_lba: u64_at(sector, 24),
            alternate_lba: u64_at(sector, 32),
            first_usable: u64_at(sector, 40),
            last_usable: u64_at(sector, 48),
            disk_guid: guid_at(sector, 56),
            entries_lba: u64_at(sector, 72),
            entries: u32_at(sector, 80),
            entry_size: u32_at(sector, 84),
            entries_crc: u32_at(sector, 88),
        };
        if h.entry_size < 128 || !h.entry_size.is_power_of_two() {
            return Err(GptError::Malformed(
                "entry size is not a power of two of at least 128",
            ));
        }
        if h.entries > 65_536 {
            return Err(GptError::Malformed("more than 65536 partition entries"));
        }
        // Checked before anything of this size is read or allocated: a
        // header with a valid CRC can still ask for 65536 entries of 2 GiB.
        if h.entries_len() > MAX_ENTRIES_LEN {
            return Err(GptError::Malformed(
                "the partition entry array is larger than 8 MiB",
            ));
        }
        Ok(h)
    }

    /// Bytes the entry array takes.
    pub fn entries_len(&self) -> usize {
        (self.entries as usize).saturating_mul(self.entry_size as usize)
    }
}

/// The largest entry array read: 65536 entries of 128 bytes (what the
/// header allows at the size every tool writes; the usual table is 16 KiB).
pub const MAX_ENTRIES_LEN: usize = 8 << 20;

/// The last LBA an entry may name: its byte offset fits a `u64` at 4096-byte
/// sectors.
const MAX_LBA: u64 = u64::MAX / 4096 - 1;

/// A used partition entry as found on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub number: u32,
    pub type_guid: Uuid,
    pub guid: Uuid,
    pub first_lba: u64,
    pub last_lba: u64,
    pub attributes: u64,
    pub name: String,
}

impl Entry {
    pub fn offset(&self, sector: SectorSize) -> Bytes {
        sector.offset_of(Lba(self.first_lba))
    }

    pub fn size(&self, sector: SectorSize) -> Bytes {
        Bytes((self.last_lba + 1 - self.first_lba) * sector.bytes())
    }
}

/// The entry that [`encode`] writes for a planned partition.
impl From<&Partition> for Entry {
    fn from(p: &Partition) -> Entry {
        Entry {
            number: p.number,
            type_guid: p.type_guid,
            guid: p.guid,
            first_lba: p.first_lba.0,
            last_lba: p.last_lba.0,
            attributes: p.attributes,
            name: p.label.clone(),
        }
    }
}

/// Decodes the used entries of an entry array and checks its CRC.
pub fn parse_entries(header: &Header, bytes: &[u8]) -> Result<Vec<Entry>, GptError> {
    let len = header.entries_len();
    if bytes.len() < len {
        return Err(GptError::Malformed("partition entry array is truncated"));
    }
    if crc32fast::hash(&bytes[..len]) != header.entries_crc {
        return Err(GptError::EntriesCrc);
    }
    let mut out = Vec::new();
    for (i, e) in bytes[..len]
        .chunks_exact(header.entry_size as usize)
        .enumerate()
    {
        let type_guid = guid_at(e, 0);
        if type_guid.is_nil() {
            continue;
        }
        let units: Vec<u16> = e[56..56 + 2 * NAME_UNITS]
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .take_while(|u| *u != 0)
            .collect();
        let (first_lba, last_lba) = (u64_at(e, 32), u64_at(e, 40));
        if first_lba > last_lba || last_lba > MAX_LBA {
            return Err(GptError::Malformed(
                "a partition entry ends before it starts or past any disk",
            ));
        }
        out.push(Entry {
            number: i as u32 + 1,
            type_guid,
            guid: guid_at(e, 16),
            first_lba,
            last_lba,
            attributes: u64_at(e, 48),
            name: String::from_utf16_lossy(&units),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{Role, Want, place, types};

    fn sample(sector: SectorSize, n: usize) -> DiskLayout {
        let cluster = Uuid::from_u128(0x1234);
        let mut wants: Vec<Want> = (0..n)
            .map(|i| Want {
                label: format!("vlx-cow-n{i}"),
                role: Role::Cow {
                    node: format!("n{i}"),
                },
                type_guid: types::VLX_COW,
                attributes: 0,
                size: Some(Bytes::mib(2)),
            })
            .collect();
        wants.push(Want {
            label: "vlx-shared".into(),
            role: Role::Shared,
            type_guid: types::LINUX_FS,
            attributes: 0,
            size: None,
        });
        place(
            cluster,
            sector,
            Bytes::mib(64 + 2 * n as u64),
            &wants,
            Bytes::mib(1),
        )
        .unwrap()
    }

    fn image(layout: &DiskLayout) -> Vec<u8> {
        let mut disk = vec![0u8; layout.size.get() as usize];
        for w in encode(layout) {
            let o = w.offset.get() as usize;
            disk[o..o + w.data.len()].copy_from_slice(&w.data);
        }
        disk
    }

    #[test]
    fn round_trips_at_both_sector_sizes() {
        for sector in [SectorSize::B512, SectorSize::B4096] {
            for n in [1, 130] {
                let layout = sample(sector, n);
                let disk = image(&layout);
                let s = sector.bytes() as usize;
                let h = Header::parse(&disk[s..2 * s]).unwrap();
                assert_eq!(h.disk_guid, layout.disk_guid);
                let eo = h.entries_lba as usize * s;
                let entries = parse_entries(&h, &disk[eo..eo + h.entries_len()]).unwrap();
                assert_eq!(entries.len(), layout.partitions.len());
                for (e, p) in entries.iter().zip(&layout.partitions) {
                    assert_eq!(
                        (e.name.as_str(), e.first_lba, e.last_lba, e.guid),
                        (p.label.as_str(), p.first_lba.0, p.last_lba.0, p.guid)
                    );
                }
                // Every field, number and attributes too, as planned.
                let planned: Vec<Entry> = layout.partitions.iter().map(Entry::from).collect();
                assert_eq!(entries, planned);
                let bo = h.alternate_lba as usize * s;
                let b = Header::parse(&disk[bo..bo + s]).unwrap();
                assert_eq!((b.my_lba, b.alternate_lba), (h.alternate_lba, 1));
                assert_eq!(&disk[510..512], &[0x55, 0xAA]);
            }
        }
    }

    #[test]
    fn detects_corruption() {
        let layout = sample(SectorSize::B512, 3);
        let mut disk = image(&layout);
        disk[512 + 60] ^= 1;
        assert_eq!(Header::parse(&disk[512..1024]), Err(GptError::HeaderCrc));
        let mut disk = image(&layout);
        disk[1024 + 200] ^= 1;
        let h = Header::parse(&disk[512..1024]).unwrap();
        assert_eq!(
            parse_entries(&h, &disk[1024..1024 + h.entries_len()]),
            Err(GptError::EntriesCrc)
        );
        assert_eq!(Header::parse(&[0u8; 512]), Err(GptError::NoSignature));
    }
}

//! The executor: boot sector bytes and the writes of a planned volume.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::Path;

use cluster::Bytes;

use super::geometry::{BACKUP_BOOT_SECTOR, FSINFO_SECTOR, Geometry};
use super::{FatError, FatImage, FatSpec, Source, io};

/// Copy buffer: large enough that a kernel or initramfs streams in a few
/// hundred writes, small enough to be no burden on the installer's blade.
const BUF: usize = 256 * 1024;

/// Boot code of a volume nobody made bootable: `int 18h` asks the BIOS for
/// the next boot device; should that return, halt.
const NO_BOOT_CODE: [u8; 5] = [0xCD, 0x18, 0xF4, 0xEB, 0xFD];

/// The reserved area: boot sector (0) and its backup (6), FSInfo (1) and
/// its backup (7), zero elsewhere. FAT spec 3.1, 3.3, 5.
pub(super) fn reserved_area(
    g: &Geometry,
    spec: &FatSpec,
    label: Option<[u8; 11]>,
    fat: &[u32],
) -> Vec<u8> {
    let s = g.sector.bytes() as usize;
    let mut area = vec![0u8; usize::from(g.reserved_sectors) * s];
    let mut b = [0u8; 512];
    b[0..3].copy_from_slice(&[0xEB, 0x58, 0x90]); // jmp to the code at 90
    b[3..11].copy_from_slice(b"MSWIN4.1"); // the OEM name the spec advises
    b[11..13].copy_from_slice(&(s as u16).to_le_bytes());
    b[13] = g.sectors_per_cluster;
    b[14..16].copy_from_slice(&g.reserved_sectors.to_le_bytes());
    b[16] = 2; // FATs
    b[21] = 0xF8; // media: fixed disk
    b[24..26].copy_from_slice(&63u16.to_le_bytes()); // CHS geometry, unused
    b[26..28].copy_from_slice(&255u16.to_le_bytes()); // by LBA readers
    let hidden = u32::try_from(spec.partition_lba.0).unwrap_or(u32::MAX);
    b[28..32].copy_from_slice(&hidden.to_le_bytes());
    b[32..36].copy_from_slice(&g.total_sectors.to_le_bytes());
    b[36..40].copy_from_slice(&g.fat_sectors.to_le_bytes());
    b[44..48].copy_from_slice(&2u32.to_le_bytes()); // root folder's cluster
    b[48..50].copy_from_slice(&(FSINFO_SECTOR as u16).to_le_bytes());
    b[50..52].copy_from_slice(&(BACKUP_BOOT_SECTOR as u16).to_le_bytes());
    b[64] = 0x80; // BIOS drive number: first hard disk
    b[66] = 0x29; // extended boot signature: the next three fields are valid
    b[67..71].copy_from_slice(&spec.volume_id.to_le_bytes());
    b[71..82].copy_from_slice(&label.unwrap_or(*b"NO NAME    "));
    b[82..90].copy_from_slice(b"FAT32   ");
    b[90..90 + NO_BOOT_CODE.len()].copy_from_slice(&NO_BOOT_CODE);
    b[510] = 0x55;
    b[511] = 0xAA;

    let used = fat.len() as u32 - 2;
    let mut info = [0u8; 512];
    info[0..4].copy_from_slice(&0x4161_5252u32.to_le_bytes());
    info[484..488].copy_from_slice(&0x6141_7272u32.to_le_bytes());
    info[488..492].copy_from_slice(&(g.clusters - used).to_le_bytes());
    let next = if used < g.clusters {
        fat.len() as u32
    } else {
        u32::MAX
    };
    info[492..496].copy_from_slice(&next.to_le_bytes());
    info[508..512].copy_from_slice(&0xAA55_0000u32.to_le_bytes());

    for (sector, bytes) in [
        (0, &b),
        (FSINFO_SECTOR, &info),
        (BACKUP_BOOT_SECTOR, &b),
        (BACKUP_BOOT_SECTOR + 1, &info),
    ] {
        let at = sector as usize * s;
        area[at..at + 512].copy_from_slice(bytes);
    }
    area
}

impl FatImage {
    /// Writes the volume at `offset` of `dest`, an image file or block
    /// device at least `offset + size` bytes long, then syncs it. Nothing
    /// outside that range is touched.
    pub fn write(&self, dest: &Path, offset: Bytes) -> Result<(), FatError> {
        let name = dest.display();
        let mut f = OpenOptions::new()
            .write(true)
            .open(dest)
            .map_err(io(format!("opening {name} to write a FAT32 volume")))?;
        let end = f
            .seek(SeekFrom::End(0))
            .map_err(io(format!("finding the size of {name}")))?;
        let need = offset.get() + self.geometry.size().get();
        if end < need {
            return Err(FatError::Io {
                what: format!("writing a FAT32 volume to {name}"),
                source: std::io::Error::other(format!(
                    "it holds {end} bytes, the volume ends at byte {need}"
                )),
            });
        }
        let base = offset.get();
        let at = |what: &str, abs: u64| format!("writing {what} at byte {abs} of {name}");
        let fat: Vec<u8> = self.fat.iter().flat_map(|e| e.to_le_bytes()).collect();
        let zeros = vec![0u8; BUF];
        for copy in 0..2 {
            let off = self.geometry.fat_offset(copy);
            f.write_all_at(&fat, base + off)
                .map_err(io(at("the FAT", base + off)))?;
            let mut pos = fat.len() as u64;
            while pos < self.geometry.fat_bytes() {
                let n = (self.geometry.fat_bytes() - pos).min(BUF as u64) as usize;
                f.write_all_at(&zeros[..n], base + off + pos)
                    .map_err(io(at("the FAT", base + off + pos)))?;
                pos += n as u64;
            }
        }
        for (cluster, bytes) in &self.dirs {
            let off = self.geometry.cluster_offset(*cluster);
            f.write_all_at(bytes, base + off)
                .map_err(io(at("a folder", base + off)))?;
        }
        for (cluster, src) in &self.files {
            if *cluster != 0 {
                self.copy(&f, src, base + self.geometry.cluster_offset(*cluster), &at)?;
            }
        }
        // The boot sectors go last, after the rest is on disk: a volume cut
        // short has no boot sector, so no firmware boots half of it.
        f.sync_all().map_err(io(format!("syncing {name}")))?;
        f.write_all_at(&self.reserved, base)
            .map_err(io(at("the boot sectors", base)))?;
        f.sync_all().map_err(io(format!("syncing {name}")))
    }

    /// Copies one file's bytes, then zeros to the end of its last cluster,
    /// so that a volume's bytes depend on its inputs alone.
    fn copy(
        &self,
        f: &File,
        src: &Source,
        pos: u64,
        at: &dyn Fn(&str, u64) -> String,
    ) -> Result<(), FatError> {
        let cb = self.geometry.cluster_bytes();
        let len = src.len();
        let pad = vec![0u8; (len.next_multiple_of(cb) - len) as usize];
        match src {
            Source::Bytes(b) => {
                f.write_all_at(b, pos).map_err(io(at("a file", pos)))?;
            }
            Source::File { path, len } => {
                let mut r = File::open(path).map_err(io(format!("reading {}", path.display())))?;
                let mut buf = vec![0u8; BUF];
                let mut done = 0u64;
                loop {
                    let n = r
                        .read(&mut buf)
                        .map_err(io(format!("reading {}", path.display())))?;
                    if n == 0 {
                        break;
                    }
                    if done + n as u64 > *len {
                        return Err(FatError::Changed {
                            path: path.clone(),
                            expected: *len,
                            found: done + n as u64,
                        });
                    }
                    f.write_all_at(&buf[..n], pos + done)
                        .map_err(io(at(&format!("{}", path.display()), pos + done)))?;
                    done += n as u64;
                }
                if done != *len {
                    return Err(FatError::Changed {
                        path: path.clone(),
                        expected: *len,
                        found: done,
                    });
                }
            }
        }
        f.write_all_at(&pad, pos + len)
            .map_err(io(at("a file's last cluster", pos + len)))
    }
}

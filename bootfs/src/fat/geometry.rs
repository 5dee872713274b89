//! Where the regions of a FAT32 volume lie: reserved sectors, the two FATs,
//! the data clusters. Pure arithmetic over the volume size.

use cluster::{Bytes, SectorSize, units::MIB};

use super::FatError;

/// FAT32 needs at least this many clusters, or every reader takes the
/// volume for FAT16 (FAT spec 3.5: "less than 65525" is FAT16).
pub const MIN_CLUSTERS: u64 = 65_525;
/// The largest cluster number FAT32 can name is 0x0FFFFFF6, so data
/// clusters count at most 0x0FFFFFF5 less the two reserved entries.
pub const MAX_CLUSTERS: u64 = 0x0FFF_FFF5 - 2;
/// The boot sector's backup and the FSInfo's sit at these sectors, as every
/// FAT32 formatter puts them.
pub const BACKUP_BOOT_SECTOR: u64 = 6;
pub const FSINFO_SECTOR: u64 = 1;

/// Cluster size by volume size, as mkfs.fat and Windows choose for FAT32:
/// 4 KiB suits 512- and 4096-byte sectors alike and, at 260 MiB, gives just
/// over the 65,525 clusters FAT32 needs. Smaller volumes (an install
/// medium's El Torito boot image, from 33 MiB) take smaller clusters, down
/// to one sector, as `mkfs.fat -F 32 -s 1` makes them: [`Geometry::new`]
/// tries [`SMALLER_CLUSTERS`] when 4 KiB clusters are too few.
fn cluster_bytes(size: Bytes) -> u64 {
    const GIB: u64 = 1 << 30;
    match size.get() {
        s if s <= 8 * GIB => 4096,
        s if s <= 16 * GIB => 8192,
        s if s <= 32 * GIB => 16_384,
        _ => 32_768,
    }
}

/// Cluster sizes tried, largest first, when 4 KiB clusters give a volume
/// fewer than [`MIN_CLUSTERS`]; never smaller than a sector.
const SMALLER_CLUSTERS: [u64; 3] = [2048, 1024, 512];

/// The geometry of one FAT32 volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    pub sector: SectorSize,
    pub total_sectors: u32,
    pub sectors_per_cluster: u8,
    /// Reserved sectors before the first FAT; grown so that the data area
    /// starts on a MiB boundary of the volume.
    pub reserved_sectors: u16,
    /// Sectors of one FAT (there are two).
    pub fat_sectors: u32,
    /// Data clusters, numbered from 2.
    pub clusters: u32,
}

impl Geometry {
    /// The geometry of a FAT32 volume of `size` bytes (rounded down to whole
    /// sectors) with `sector`-byte logical sectors.
    pub fn new(sector: SectorSize, size: Bytes) -> Result<Geometry, FatError> {
        let s = sector.bytes();
        let too = |reason: String| FatError::Size {
            size,
            sector,
            reason,
        };
        let total = size.get() / s;
        let align = MIB / s;
        let base_reserved = match sector {
            // 32 sectors is what every formatter reserves at 512 B; at 4 KiB
            // the two boot sectors at 6 and 7 need 8.
            SectorSize::B512 => 32,
            SectorSize::B4096 => 8,
        };
        // (sectors per cluster, FAT sectors, first data sector, clusters)
        let layout = |spc: u64| {
            let upper = total.saturating_sub(base_reserved) / spc;
            let fat = ((upper + 2) * 4).div_ceil(s);
            // The FAT is sized for an upper bound of the clusters; a FAT
            // longer than needed is valid, its tail stays zero.
            let data = (base_reserved + 2 * fat).next_multiple_of(align);
            (spc, fat, data, total.saturating_sub(data) / spc)
        };
        let first = layout(cluster_bytes(size) / s);
        let (spc, fat, data, clusters) = if first.3 < MIN_CLUSTERS {
            SMALLER_CLUSTERS
                .iter()
                .filter(|c| **c >= s)
                .map(|c| layout(c / s))
                .find(|l| l.3 >= MIN_CLUSTERS)
                .unwrap_or(first)
        } else {
            first
        };
        if clusters < MIN_CLUSTERS {
            let smallest = s.max(512) / s;
            let (_, _, d, _) = layout(smallest);
            let min = Bytes(((MIN_CLUSTERS * smallest + d) * s).next_multiple_of(MIB));
            return Err(too(format!(
                "it gives {clusters} clusters of {} bytes, FAT32 needs at least {MIN_CLUSTERS} (about {min})",
                spc * s
            )));
        }
        if clusters > MAX_CLUSTERS || total > u64::from(u32::MAX) {
            return Err(too(format!(
                "FAT32 holds at most {MAX_CLUSTERS} clusters and {} sectors",
                u32::MAX
            )));
        }
        let reserved = data - 2 * fat;
        Ok(Geometry {
            sector,
            total_sectors: total as u32,
            sectors_per_cluster: spc as u8,
            reserved_sectors: u16::try_from(reserved)
                .map_err(|_| too("the reserved area outgrows 65535 sectors".into()))?,
            fat_sectors: fat as u32,
            clusters: clusters as u32,
        })
    }

    pub fn cluster_bytes(&self) -> u64 {
        u64::from(self.sectors_per_cluster) * self.sector.bytes()
    }

    /// Bytes the volume takes.
    pub fn size(&self) -> Bytes {
        Bytes(u64::from(self.total_sectors) * self.sector.bytes())
    }

    /// Byte offset of FAT number `copy` (0 or 1) from the start of the volume.
    pub fn fat_offset(&self, copy: u64) -> u64 {
        (u64::from(self.reserved_sectors) + copy * u64::from(self.fat_sectors))
            * self.sector.bytes()
    }

    pub fn fat_bytes(&self) -> u64 {
        u64::from(self.fat_sectors) * self.sector.bytes()
    }

    /// Byte offset of data cluster `c` (≥ 2) from the start of the volume.
    pub fn cluster_offset(&self, c: u32) -> u64 {
        self.fat_offset(2) + u64::from(c - 2) * self.cluster_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fits_fat32_from_260_mib_at_both_sector_sizes() {
        for sector in [SectorSize::B512, SectorSize::B4096] {
            for mib in [260u64, 300, 1024, 9 * 1024, 40 * 1024] {
                let g = Geometry::new(sector, Bytes::mib(mib)).unwrap();
                assert!(u64::from(g.clusters) >= MIN_CLUSTERS, "{mib} MiB");
                assert_eq!(g.fat_offset(2) % MIB, 0, "data area on a MiB boundary");
                assert!(g.fat_bytes() >= (u64::from(g.clusters) + 2) * 4);
                assert!(g.cluster_offset(g.clusters + 1) + g.cluster_bytes() <= g.size().get());
                assert!(u64::from(g.reserved_sectors) > BACKUP_BOOT_SECTOR + 1);
            }
            assert_eq!(
                Geometry::new(sector, Bytes::mib(300))
                    .unwrap()
                    .cluster_bytes(),
                4096
            );
        }
    }

    #[test]
    fn small_volumes_take_small_clusters() {
        for (mib, cluster) in [(200, 2048), (100, 1024), (40, 512)] {
            let g = Geometry::new(SectorSize::B512, Bytes::mib(mib)).unwrap();
            assert_eq!(g.cluster_bytes(), cluster, "{mib} MiB");
            assert!(u64::from(g.clusters) >= MIN_CLUSTERS, "{mib} MiB");
            assert_eq!(g.fat_offset(2) % MIB, 0, "data area on a MiB boundary");
        }
    }

    #[test]
    fn refuses_volumes_too_small_for_fat32() {
        let err = Geometry::new(SectorSize::B512, Bytes::mib(30)).unwrap_err();
        assert!(
            err.to_string().contains("FAT32 needs at least 65525"),
            "{err}"
        );
        assert!(Geometry::new(SectorSize::B4096, Bytes::mib(256)).is_err());
    }
}

//! Finding the SAN among the blade's disks, from the bytes of their GPTs.
//!
//! The SAN is the disk whose GPT disk GUID is the cluster's
//! (`derived_guid(uuid, "disk")`, the same function the installer lays the
//! disk out with) and which holds a `vlx-meta` partition. Exactly one disk
//! must match: two paths to one LUN (multipath) show up as two such disks,
//! and the agent does not set up multipath.

use std::fmt;
use std::io;

use cluster::SectorSize;
use cluster::gpt::{Entry, GptError, Header, parse_entries};
use cluster::layout::derived_guid;
use uuid::Uuid;

use crate::multipath::{self, PathError, Paths, SanPath};

/// The partition the agent mounts first, found by the disk's own table
/// (the plan is on it).
pub const META_LABEL: &str = cluster::locate::META_LABEL;

/// A readable GPT: its header and used entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gpt {
    pub header: Header,
    pub entries: Vec<Entry>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReadGptError {
    #[error("reading it failed: {0}")]
    Io(#[source] io::Error),
    #[error("no valid GPT (primary: {primary}; backup: {backup})")]
    Invalid { primary: GptError, backup: String },
}

/// Reads the GPT of a disk of `lbas` logical sectors of `sector` bytes
/// through `read_at(offset, len)`. The primary copy is tried first, then the
/// backup at the last LBA.
pub fn read_gpt(
    sector: SectorSize,
    lbas: u64,
    mut read_at: impl FnMut(u64, usize) -> io::Result<Vec<u8>>,
) -> Result<Gpt, ReadGptError> {
    let s = sector.bytes();
    let mut one = |lba: u64| -> Result<Result<Gpt, GptError>, io::Error> {
        let h = match Header::parse(&read_at(lba * s, s as usize)?) {
            Ok(h) => h,
            Err(e) => return Ok(Err(e)),
        };
        // The entry array must lie on the disk: a damaged header may put
        // it anywhere (its length is bounded by `Header::parse`).
        let Some(at) = h
            .entries_lba
            .checked_mul(s)
            .filter(|at| at.saturating_add(h.entries_len() as u64) <= lbas.saturating_mul(s))
        else {
            return Ok(Err(GptError::Malformed(
                "the partition entry array lies past the end of the disk",
            )));
        };
        let bytes = read_at(at, h.entries_len())?;
        Ok(parse_entries(&h, &bytes).map(|entries| Gpt { header: h, entries }))
    };
    let primary = match one(1).map_err(ReadGptError::Io)? {
        Ok(gpt) => return Ok(gpt),
        Err(e) => e,
    };
    let backup = match lbas.checked_sub(1).filter(|last| *last > 1) {
        None => "the disk is too small".to_owned(),
        Some(last) => match one(last).map_err(ReadGptError::Io)? {
            Ok(gpt) => return Ok(gpt),
            Err(e) => e.to_string(),
        },
    };
    Err(ReadGptError::Invalid { primary, backup })
}

/// What one disk was found to hold.
#[derive(Debug)]
pub struct Probe {
    /// Kernel name, e.g. `vda`, `sdb`, `nvme0n1`.
    pub disk: String,
    pub sector: SectorSize,
    /// Size in 512-byte sectors (`/sys/block/<disk>/size`).
    pub sectors: u64,
    /// The LUN's SCSI identity (`/sys/block/<disk>/device/wwid`), if the
    /// disk has one (SCSI disks do; virtio-blk has none).
    pub wwid: Option<String>,
    pub gpt: Result<Gpt, String>,
}

impl Probe {
    fn summary(&self, want: Uuid) -> String {
        match &self.gpt {
            Err(e) => format!("{}: {e}", self.disk),
            Ok(g) if g.header.disk_guid != want => {
                format!(
                    "{}: GPT of another disk ({})",
                    self.disk, g.header.disk_guid
                )
            }
            Ok(_) => format!("{}: this cluster's GPT but no {META_LABEL}", self.disk),
        }
    }
}

/// The SAN as found: its disk and partition table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SanDisk {
    pub disk: String,
    pub sector: SectorSize,
    pub entries: Vec<Entry>,
}

impl SanDisk {
    pub fn partition(&self, label: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.name == label)
    }

    /// The device name of partition `label`, e.g. `vda2`.
    pub fn device(&self, label: &str) -> Option<String> {
        self.partition(label)
            .map(|e| partition_device(&self.disk, e.number))
    }
}

/// The kernel's name for partition `number` of `disk`: a `p` goes between
/// when the disk's name ends in a digit (`nvme0n1p2`, `mmcblk0p1`,
/// `loop0p3`), not otherwise (`sda2`, `vdb1`).
pub fn partition_device(disk: &str, number: u32) -> String {
    if disk.ends_with(|c: char| c.is_ascii_digit()) {
        format!("{disk}p{number}")
    } else {
        format!("{disk}{number}")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SanError {
    #[error("no disk holds the SAN of cluster {cluster} (GPT disk GUID {guid} with a {META_LABEL} partition); disks seen: {}", seen_list(.seen))]
    NotFound {
        cluster: Uuid,
        guid: Uuid,
        seen: Vec<String>,
    },
    #[error("the SAN of cluster {cluster}: {source}")]
    Paths {
        cluster: Uuid,
        #[source]
        source: Box<PathError>,
    },
}

/// The SAN as found: one disk, or several paths to its LUN that need a
/// multipath map first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    Disk(SanDisk),
    Paths(Paths),
}

fn seen_list(seen: &[String]) -> String {
    if seen.is_empty() {
        "none".to_owned()
    } else {
        seen.join("; ")
    }
}

/// Picks the SAN of `cluster` among `probes`: the one disk that holds it,
/// or the paths to its one LUN.
pub fn choose(cluster: Uuid, probes: &[Probe]) -> Result<Found, SanError> {
    let guid = derived_guid(cluster, "disk");
    let matching: Vec<(&Probe, &Gpt)> = probes
        .iter()
        .filter_map(|p| p.gpt.as_ref().ok().map(|g| (p, g)))
        .filter(|(_, g)| g.header.disk_guid == guid)
        .filter(|(_, g)| g.entries.iter().any(|e| e.name == META_LABEL))
        .collect();
    match matching.as_slice() {
        [(p, g)] => Ok(Found::Disk(SanDisk {
            disk: p.disk.clone(),
            sector: p.sector,
            entries: g.entries.clone(),
        })),
        [] => Err(SanError::NotFound {
            cluster,
            guid,
            seen: probes.iter().map(|p| p.summary(guid)).collect(),
        }),
        many => multipath::group(
            many.iter()
                .map(|(p, g)| {
                    let path = SanPath {
                        disk: p.disk.clone(),
                        wwid: p.wwid.clone(),
                        sectors: p.sectors,
                        sector: p.sector,
                    };
                    (path, g.entries.clone())
                })
                .collect(),
        )
        .map(Found::Paths)
        .map_err(|source| SanError::Paths {
            cluster,
            source: Box::new(source),
        }),
    }
}

/// Whether the disk `found` among `probes` may be one of several paths to
/// its LUN, so that a second one may still show up: only a disk with a SCSI
/// identity (`device/wwid`) can be a path ([`multipath`] groups by it).
pub fn may_have_paths(probes: &[Probe], found: &SanDisk) -> bool {
    probes
        .iter()
        .find(|p| p.disk == found.disk)
        .is_none_or(|p| p.wwid.is_some())
}

/// Whether a `/sys/block` name can be the SAN: not a RAM, loop, optical,
/// floppy, network block, RAID or device-mapper device.
pub fn is_candidate(name: &str) -> bool {
    const NOT: &[&str] = &["loop", "ram", "zram", "dm-", "sr", "fd", "nbd", "md"];
    !NOT.iter().any(|p| name.starts_with(p))
}

impl fmt::Display for SanDisk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "/dev/{} ({}-byte sectors)", self.disk, self.sector)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::plan;
    use cluster::Plan;
    use cluster::gpt::encode;

    /// The GPT regions of the plan's disk; the rest reads as zeros.
    fn disk(plan: &Plan) -> impl FnMut(u64, usize) -> io::Result<Vec<u8>> + use<> {
        let writes = encode(&plan.disk);
        move |offset, len| {
            let mut out = vec![0u8; len];
            for w in &writes {
                let (a, b) = (w.offset.get(), w.offset.get() + w.data.len() as u64);
                let (lo, hi) = (offset.max(a), (offset + len as u64).min(b));
                if lo < hi {
                    out[(lo - offset) as usize..(hi - offset) as usize]
                        .copy_from_slice(&w.data[(lo - a) as usize..(hi - a) as usize]);
                }
            }
            Ok(out)
        }
    }

    fn probe(name: &str, plan: &Plan) -> Probe {
        let d = &plan.disk;
        Probe {
            disk: name.into(),
            sector: d.sector_size,
            sectors: d.lbas * d.sector_size.bytes() / 512,
            wwid: Some("naa.60000000000000000e00000000010001".into()),
            gpt: read_gpt(d.sector_size, d.lbas, disk(plan)).map_err(|e| e.to_string()),
        }
    }

    #[test]
    fn reads_the_plans_gpt_at_both_sector_sizes() {
        for sector in [512, 4096] {
            let plan = plan(sector);
            let gpt = read_gpt(plan.disk.sector_size, plan.disk.lbas, disk(&plan)).unwrap();
            assert_eq!(gpt.header.disk_guid, plan.disk.disk_guid);
            let labels: Vec<_> = gpt.entries.iter().map(|e| e.name.as_str()).collect();
            let want: Vec<_> = plan
                .disk
                .partitions
                .iter()
                .map(|p| p.label.as_str())
                .collect();
            assert_eq!(labels, want);
        }
    }

    #[test]
    fn falls_back_to_the_backup_gpt() {
        let plan = plan(512);
        let mut inner = disk(&plan);
        // The primary header (LBA 1) reads as zeros.
        let broken = move |offset: u64, len: usize| {
            let mut b = inner(offset, len)?;
            if offset == 512 {
                b.fill(0);
            }
            Ok(b)
        };
        let gpt = read_gpt(SectorSize::B512, plan.disk.lbas, broken).unwrap();
        assert_eq!(gpt.header.my_lba, plan.disk.lbas - 1);
        let zeros = |_: u64, len: usize| Ok(vec![0u8; len]);
        let err = read_gpt(SectorSize::B512, plan.disk.lbas, zeros).unwrap_err();
        assert_eq!(
            err.to_string(),
            "no valid GPT (primary: no GPT signature; backup: no GPT signature)"
        );
    }

    #[test]
    fn chooses_the_one_disk_of_the_cluster() {
        let ours = plan(4096);
        let uuid = ours.cluster.uuid;
        let other = {
            let mut p = plan(512);
            p.disk.disk_guid = derived_guid(Uuid::from_u128(7), "disk");
            p
        };
        let no_meta = {
            let mut p = plan(512);
            p.disk.partitions.retain(|x| x.label != META_LABEL);
            p
        };
        let blank = || Probe {
            disk: "sda".into(),
            sector: SectorSize::B512,
            sectors: 2048,
            wwid: None,
            gpt: Err("no valid GPT".into()),
        };

        let Found::Disk(san) = choose(
            uuid,
            &[blank(), probe("vdb", &other), probe("nvme0n1", &ours)],
        )
        .unwrap() else {
            panic!("one disk is no multipath")
        };
        assert_eq!(
            (san.disk.as_str(), san.sector),
            ("nvme0n1", SectorSize::B4096)
        );
        assert_eq!(san.device("vlx-meta").as_deref(), Some("nvme0n1p2"));
        assert_eq!(san.device("vlx-cow-n2").as_deref(), Some("nvme0n1p6"));
        assert_eq!(san.device("vlx-nothing"), None);

        let err = choose(
            uuid,
            &[blank(), probe("vdb", &other), probe("vdc", &no_meta)],
        );
        let Err(e @ SanError::NotFound { .. }) = err else {
            panic!("{err:?}")
        };
        let text = e.to_string();
        for want in [
            "sda: no valid GPT",
            "vdb: GPT of another disk",
            "vdc: this cluster's GPT but no vlx-meta",
            &ours.disk.disk_guid.to_string(),
        ] {
            assert!(text.contains(want), "{want} not in {text}");
        }

        // Two paths to one LUN, beside disks that are not the SAN.
        let found = choose(
            uuid,
            &[
                probe("sda", &ours),
                blank(),
                probe("sdb", &ours),
                probe("vdb", &other),
            ],
        )
        .unwrap();
        let Found::Paths(paths) = found else {
            panic!("{found:?}")
        };
        assert_eq!(paths.names(), "sda, sdb");
        assert_eq!(paths.sector, SectorSize::B4096);
        assert_eq!(
            paths.disk().device("vlx-meta").as_deref(),
            Some("mapper/vlx-san2")
        );

        // The same GPT on two LUNs is a copy of the SAN.
        let mut copy = probe("sdb", &ours);
        copy.wwid = Some("naa.60000000000000000e00000000020001".into());
        let err = choose(uuid, &[probe("sda", &ours), copy]).unwrap_err();
        let SanError::Paths { source, .. } = &err else {
            panic!("{err:?}")
        };
        assert!(matches!(**source, PathError::Cloned { .. }), "{err}");
        assert!(err.to_string().contains(&uuid.to_string()), "{err}");

        assert!(
            choose(uuid, &[])
                .unwrap_err()
                .to_string()
                .contains("disks seen: none")
        );
    }

    #[test]
    fn only_a_disk_with_a_scsi_identity_may_have_a_second_path() {
        let ours = plan(512);
        let uuid = ours.cluster.uuid;
        let scsi = probe("sda", &ours);
        let virtio = Probe {
            wwid: None,
            ..probe("vda", &ours)
        };
        for (p, paths) in [(scsi, true), (virtio, false)] {
            let probes = [p];
            let Found::Disk(d) = choose(uuid, &probes).expect("the SAN") else {
                panic!("one disk is not paths");
            };
            assert_eq!(may_have_paths(&probes, &d), paths, "{}", d.disk);
        }
    }

    #[test]
    fn names_partitions_like_the_kernel() {
        for (disk, n, want) in [
            ("sda", 2, "sda2"),
            ("vdb", 11, "vdb11"),
            ("nvme0n1", 3, "nvme0n1p3"),
            ("mmcblk0", 1, "mmcblk0p1"),
            ("loop7", 4, "loop7p4"),
        ] {
            assert_eq!(partition_device(disk, n), want);
        }
    }

    #[test]
    fn skips_devices_that_are_not_disks() {
        for (name, want) in [
            ("vda", true),
            ("sdb", true),
            ("nvme0n1", true),
            ("loop0", false),
            ("dm-0", false),
            ("sr0", false),
            ("ram0", false),
        ] {
            assert_eq!(is_candidate(name), want, "{name}");
        }
    }
}

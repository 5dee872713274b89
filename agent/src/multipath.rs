//! Several paths to one LUN (two storage NICs, two portals of one
//! target; or two FC/SAS ports): device-mapper `multipath` over them,
//! built by the agent itself with `dmsetup`, so that no multipathd is
//! needed on the boot path.
//!
//! Which disks are paths: every disk that carries the cluster's GPT (the
//! SAN's disk GUID and a `vlx-meta`, [`crate::san::choose`]) and the same
//! SCSI identity (`/sys/block/<disk>/device/wwid`, which the kernel
//! derives from the LUN's VPD page 0x83), with the same size and sector
//! size. Two disks with the cluster's GPT but different identities are two
//! LUNs holding a copy of the SAN (a cloned LUN, a snapshot presented by
//! mistake), not two paths: writing both would split the cluster, so the
//! boot stops. A disk without an identity cannot be told from a copy
//! either, and stops it too.
//!
//! The map (`vlx-san`) has one priority group with every path,
//! `round-robin` (both NICs carry I/O, and a dead path is noticed by the
//! I/O that fails on it), and `queue_if_no_path`: with every path down,
//! I/O waits for one to come back rather than failing under the root file
//! system, as multipathd's `no_path_retry queue` does for a root on SAN.
//! The kernel fails a path on an I/O error but never tries it again by
//! itself: the node's `/usr/lib/vlx/paths` (started by its rcS) reads
//! `dmsetup status vlx-san`, reads a block through each failed path and
//! sends `reinstate_path` for those that answer.
//!
//! A blade that boots while one path is down (or whose boot ROM described
//! a path it could not log in on) boots on the paths that logged in: with
//! one, the SAN is that plain disk and there is no map. A path that comes
//! back later does not join until the next boot: the agent builds the map
//! once, and the paths watcher only reinstates paths already in it.
//!
//! The kernel makes no partitions on a device-mapper device, so each of
//! the SAN's partitions becomes a `linear` map over `vlx-san`
//! (`vlx-san<N>`, as kpartx would), and the SAN as the rest of the agent
//! sees it is `mapper/vlx-san`: the locator, the snapshot and the swap
//! need no change.

use std::fmt;

use cluster::SectorSize;
use cluster::gpt::Entry;

use crate::dm::{DmSectors, LinearTable};
use crate::san::{SanDisk, partition_device};

/// The name of the multipath map of the SAN; its partitions are
/// `vlx-san1`, `vlx-san2`, ... (see [`partitions`]).
pub const SAN_DM_NAME: &str = "vlx-san";

/// The SCSI path timeout an iSCSI path gets once it is one of several, in
/// seconds (`recovery_tmo` of its session). open-iscsi's default of 120 s
/// suits a single path: I/O waits for the session to come back. With a
/// second path, I/O should fail over in a few seconds instead; open-iscsi's
/// README suggests a short `replacement_timeout` under dm-multipath.
pub const PATH_RECOVERY_TMO: u32 = 5;

/// One path to the LUN: a disk the kernel made for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SanPath {
    /// Kernel name, e.g. `sdb`.
    pub disk: String,
    /// The LUN's SCSI identity as the kernel read it (`device/wwid`).
    pub wwid: Option<String>,
    /// Size in 512-byte sectors (`/sys/block/<disk>/size`).
    pub sectors: u64,
    pub sector: SectorSize,
}

/// Several paths to the SAN, checked to be one LUN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    pub wwid: String,
    pub paths: Vec<SanPath>,
    pub sector: SectorSize,
    pub sectors: u64,
    pub entries: Vec<Entry>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error(
        "disks {} all hold the SAN's GPT, but {disk} has no SCSI identity \
         (/sys/block/{disk}/device/wwid): it cannot be told from a copy of the SAN on \
         another LUN, so none is used",
        .disks.join(", ")
    )]
    NoIdentity { disks: Vec<String>, disk: String },
    #[error(
        "disks {} hold the SAN's GPT but are different LUNs ({}): a copy of the SAN, not \
         another path to it; present only the SAN's LUN to this blade",
        .disks.iter().map(|(d, _)| d.as_str()).collect::<Vec<_>>().join(", "),
        .disks.iter().map(|(d, w)| format!("{d}: {w}")).collect::<Vec<_>>().join("; ")
    )]
    Cloned { disks: Vec<(String, String)> },
    /// `what` they disagree on; `detail` says it whole, naming both.
    #[error("{detail}")]
    Disagree { what: &'static str, detail: String },
}

/// Checks that `paths` (two or more disks, each carrying the SAN's GPT
/// with `entries`) are one LUN, and groups them. Each path's GPT must be
/// the same as the first's (`entries_of`), since the same LUN read twice
/// gives the same bytes.
pub fn group(paths: Vec<(SanPath, Vec<Entry>)>) -> Result<Paths, PathError> {
    let disks: Vec<String> = paths.iter().map(|(p, _)| p.disk.clone()).collect();
    let mut ids = Vec::new();
    for (p, _) in &paths {
        match &p.wwid {
            Some(w) if !w.trim().is_empty() => ids.push((p.disk.clone(), w.trim().to_owned())),
            _ => {
                return Err(PathError::NoIdentity {
                    disks,
                    disk: p.disk.clone(),
                });
            }
        }
    }
    let Some((first_disk, wwid)) = ids.first().cloned() else {
        return Err(PathError::NoIdentity {
            disks,
            disk: "(none)".into(),
        });
    };
    if ids.iter().any(|(_, w)| *w != wwid) {
        return Err(PathError::Cloned { disks: ids });
    }
    let (first, entries) = &paths[0];
    for (p, e) in &paths[1..] {
        let disagree = |what, a_says: String, b_says: String| PathError::Disagree {
            what,
            detail: format!(
                "paths {first_disk} and {} to LUN {wwid} disagree on {what}: {a_says} and {b_says}",
                p.disk
            ),
        };
        if p.sector != first.sector {
            return Err(disagree(
                "the sector size",
                format!("{} bytes", first.sector),
                format!("{} bytes", p.sector),
            ));
        }
        if p.sectors != first.sectors {
            return Err(disagree(
                "the size",
                format!("{} sectors", first.sectors),
                format!("{} sectors", p.sectors),
            ));
        }
        if e != entries {
            return Err(disagree(
                "the partition table",
                format!("{} partitions", entries.len()),
                format!("{} partitions, or other ones", e.len()),
            ));
        }
    }
    Ok(Paths {
        wwid,
        sector: first.sector,
        sectors: first.sectors,
        entries: entries.clone(),
        paths: paths.into_iter().map(|(p, _)| p).collect(),
    })
}

/// How the map spreads I/O over its paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// One group, `round-robin` over every path (the agent's choice).
    RoundRobin,
    /// A group per path, in order: the first carries all I/O, the next
    /// takes over when it fails.
    Failover,
}

/// A `multipath` target line over whole paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultipathTable {
    pub length: DmSectors,
    /// Device paths, e.g. `/dev/sdb`.
    pub paths: Vec<String>,
    pub policy: Policy,
    /// `queue_if_no_path`: with every path failed, I/O waits.
    pub queue: bool,
}

impl fmt::Display for MultipathTable {
    /// The line `dmsetup create --table` takes: features, no hardware
    /// handler, the priority groups (the first one used first), each a
    /// `round-robin` selector with one argument per path (its
    /// `repeat_count`, 1: the next request goes to the next path, as
    /// multipath-tools' `rr_min_io_rq` default).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0 {} multipath ", self.length)?;
        if self.queue {
            write!(f, "1 queue_if_no_path ")?;
        } else {
            write!(f, "0 ")?;
        }
        // No hardware handler.
        write!(f, "0 ")?;
        let groups: Vec<&[String]> = match self.policy {
            Policy::RoundRobin => vec![self.paths.as_slice()],
            Policy::Failover => self.paths.chunks(1).collect(),
        };
        write!(f, "{} 1", groups.len())?;
        for g in groups {
            write!(f, " round-robin 0 {} 1", g.len())?;
            for p in g {
                write!(f, " {p} 1")?;
            }
        }
        Ok(())
    }
}

impl Paths {
    /// The map over every path, as the agent builds it.
    pub fn table(&self) -> MultipathTable {
        MultipathTable {
            length: DmSectors(self.sectors),
            paths: self
                .paths
                .iter()
                .map(|p| format!("/dev/{}", p.disk))
                .collect(),
            policy: Policy::RoundRobin,
            queue: true,
        }
    }

    /// The SAN as the rest of the boot sees it once the map and its
    /// partitions exist: the disk `mapper/vlx-san`.
    pub fn disk(&self) -> SanDisk {
        SanDisk {
            disk: format!("mapper/{SAN_DM_NAME}"),
            sector: self.sector,
            entries: self.entries.clone(),
        }
    }

    /// The disks, for messages: `sdb, sdc`.
    pub fn names(&self) -> String {
        self.paths
            .iter()
            .map(|p| p.disk.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The `linear` maps that stand for the partitions of the map `disk`
/// (`mapper/vlx-san`), named so that [`partition_device`] finds them
/// (`vlx-san3` is partition 3), in 512-byte sectors whatever the disk's
/// sector size.
pub fn partitions(disk: &SanDisk) -> Vec<LinearTable> {
    let s = disk.sector.bytes() / 512;
    disk.entries
        .iter()
        .map(|e| LinearTable {
            name: partition_device(SAN_DM_NAME, e.number),
            length: DmSectors((e.last_lba + 1 - e.first_lba) * s),
            device: format!("/dev/{}", disk.disk),
            offset: DmSectors(e.first_lba * s),
        })
        .collect()
}

/// A path's state in `dmsetup status` of a multipath map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathState {
    /// `MAJ:MIN`.
    pub dev: String,
    pub active: bool,
    pub fail_count: u64,
}

/// The paths of one `dmsetup status` line of a multipath map (`0 N
/// multipath <#feature args> ... <#hw args> ... <#groups> <next group>
/// {<state> <#group args> ... <#paths> <#path args> {<dev> <A|F> <fail
/// count> <selector args>...}}`), or `None` if the line is not one.
pub fn parse_status(line: &str) -> Option<Vec<PathState>> {
    let w: Vec<&str> = line.split_whitespace().collect();
    let mut i = 3;
    if w.get(2) != Some(&"multipath") {
        return None;
    }
    let skip_counted = |i: &mut usize| -> Option<()> {
        let n: usize = w.get(*i)?.parse().ok()?;
        *i += 1 + n;
        Some(())
    };
    skip_counted(&mut i)?; // features
    skip_counted(&mut i)?; // hardware handler
    let groups: usize = w.get(i)?.parse().ok()?;
    i += 2; // #groups, next group
    let mut out = Vec::new();
    for _ in 0..groups {
        i += 1; // group state: A, E or D
        skip_counted(&mut i)?; // group args (selector status)
        let paths: usize = w.get(i)?.parse().ok()?;
        let args: usize = w.get(i + 1)?.parse().ok()?;
        i += 2;
        for _ in 0..paths {
            let dev = (*w.get(i)?).to_owned();
            let active = match *w.get(i + 1)? {
                "A" => true,
                "F" => false,
                _ => return None,
            };
            let fail_count = w.get(i + 2)?.parse().ok()?;
            out.push(PathState {
                dev,
                active,
                fail_count,
            });
            i += 3 + args;
        }
    }
    (i == w.len()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::plan;

    fn entries(sector: u32) -> Vec<Entry> {
        plan(sector)
            .disk
            .partitions
            .iter()
            .map(Entry::from)
            .collect()
    }

    fn path(disk: &str, wwid: Option<&str>) -> SanPath {
        SanPath {
            disk: disk.into(),
            wwid: wwid.map(Into::into),
            sectors: 2_097_152,
            sector: SectorSize::B512,
        }
    }

    const WWID: &str = "naa.60000000000000000e00000000010001";

    #[test]
    fn two_paths_to_one_lun_make_one_map() {
        let e = entries(512);
        let p = group(vec![
            (path("sdb", Some(WWID)), e.clone()),
            (path("sdc", Some(&format!("{WWID}\n"))), e.clone()),
        ])
        .unwrap();
        assert_eq!(p.wwid, WWID);
        assert_eq!(p.names(), "sdb, sdc");
        assert_eq!(
            p.table().to_string(),
            "0 2097152 multipath 1 queue_if_no_path 0 1 1 round-robin 0 2 1 /dev/sdb 1 /dev/sdc 1"
        );
        let failover = MultipathTable {
            policy: Policy::Failover,
            queue: false,
            ..p.table()
        };
        assert_eq!(
            failover.to_string(),
            "0 2097152 multipath 0 0 2 1 round-robin 0 1 1 /dev/sdb 1 round-robin 0 1 1 /dev/sdc 1"
        );
        let disk = p.disk();
        assert_eq!(disk.to_string(), "/dev/mapper/vlx-san (512-byte sectors)");
        // The rest of the boot finds its volumes on the map's partitions.
        assert_eq!(disk.device("vlx-meta").as_deref(), Some("mapper/vlx-san2"));
    }

    #[test]
    fn partitions_are_linear_maps_in_512_byte_sectors() {
        for sector in [512, 4096] {
            let plan = plan(sector);
            let disk = SanDisk {
                disk: format!("mapper/{SAN_DM_NAME}"),
                sector: plan.disk.sector_size,
                entries: entries(sector),
            };
            let maps = partitions(&disk);
            assert_eq!(maps.len(), plan.disk.partitions.len());
            for (m, p) in maps.iter().zip(&plan.disk.partitions) {
                assert_eq!(m.name, format!("vlx-san{}", p.number));
                assert_eq!(m.path(), format!("/dev/mapper/vlx-san{}", p.number));
                assert_eq!(m.device, "/dev/mapper/vlx-san");
                let s = u64::from(sector) / 512;
                assert_eq!(m.offset.0, p.first_lba.0 * s);
                assert_eq!(m.length.0, (p.last_lba.0 + 1 - p.first_lba.0) * s);
                // The locator's device for this partition is this map.
                assert_eq!(format!("/dev/{}", disk.device(&p.label).unwrap()), m.path());
            }
            // The ESP starts at 1 MiB: 2048 sectors of 512 bytes.
            assert_eq!(maps[0].offset.0, 2048);
        }
    }

    #[test]
    fn refuses_a_copy_of_the_san_on_another_lun() {
        let e = entries(512);
        let err = group(vec![
            (path("sdb", Some(WWID)), e.clone()),
            (
                path("sdc", Some("naa.60000000000000000e00000000020001")),
                e.clone(),
            ),
        ])
        .unwrap_err();
        assert!(matches!(err, PathError::Cloned { .. }), "{err}");
        let text = err.to_string();
        for want in ["sdb, sdc", "different LUNs", "not another path", WWID] {
            assert!(text.contains(want), "{want} not in {text}");
        }

        let err = group(vec![
            (path("vdb", None), e.clone()),
            (path("vdc", None), e.clone()),
        ])
        .unwrap_err();
        assert_eq!(
            err,
            PathError::NoIdentity {
                disks: vec!["vdb".into(), "vdc".into()],
                disk: "vdb".into()
            }
        );
        assert!(err.to_string().contains("/sys/block/vdb/device/wwid"));
        let err = group(vec![
            (path("sdb", Some(WWID)), e.clone()),
            (path("sdc", Some(" ")), e.clone()),
        ])
        .unwrap_err();
        assert!(matches!(&err, PathError::NoIdentity { disk, .. } if disk == "sdc"));
    }

    #[test]
    fn refuses_paths_that_disagree() {
        let e = entries(512);
        let small = SanPath {
            sectors: 1024,
            ..path("sdc", Some(WWID))
        };
        let err = group(vec![
            (path("sdb", Some(WWID)), e.clone()),
            (small, e.clone()),
        ])
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "paths sdb and sdc to LUN {WWID} disagree on the size: 2097152 sectors and 1024 sectors"
            )
        );
        let big = SanPath {
            sector: SectorSize::B4096,
            ..path("sdc", Some(WWID))
        };
        let err = group(vec![(path("sdb", Some(WWID)), e.clone()), (big, e.clone())]).unwrap_err();
        assert!(matches!(
            err,
            PathError::Disagree {
                what: "the sector size",
                ..
            }
        ));
        let mut other = e.clone();
        other.pop();
        let err = group(vec![
            (path("sdb", Some(WWID)), e.clone()),
            (path("sdc", Some(WWID)), other),
        ])
        .unwrap_err();
        assert!(matches!(
            err,
            PathError::Disagree {
                what: "the partition table",
                ..
            }
        ));
    }

    #[test]
    fn reads_the_paths_of_dmsetup_status() {
        // As the kernel prints it: round-robin, one group, one path failed.
        let one_group = "0 2097152 multipath 2 0 0 0 1 1 A 0 2 0 8:16 A 0 8:32 F 1";
        assert_eq!(
            parse_status(one_group).unwrap(),
            vec![
                PathState {
                    dev: "8:16".into(),
                    active: true,
                    fail_count: 0
                },
                PathState {
                    dev: "8:32".into(),
                    active: false,
                    fail_count: 1
                },
            ]
        );
        let failover = "0 2097152 multipath 2 1 0 0 2 1 A 0 1 0 8:16 A 0 E 0 1 0 8:32 A 0";
        let s = parse_status(failover).unwrap();
        assert_eq!(s.len(), 2);
        assert!(s.iter().all(|p| p.active));
        assert_eq!(parse_status("0 131072 snapshot 16/131072 16"), None);
        assert_eq!(
            parse_status("0 2097152 multipath 2 0 0 0 1 1 A 0 2 0 8:16 A 0"),
            None
        );
        // A selector with status per path (service-time: two numbers).
        let st = "0 8 multipath 2 0 0 0 1 1 A 0 2 2 8:16 A 0 0 1 8:32 F 3 0 1";
        assert_eq!(parse_status(st).unwrap()[1].fail_count, 3);
    }
}

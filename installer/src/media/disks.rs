//! The disks the installer environment sees, from sysfs: name, size,
//! model, serial; what is on them comes from `wipefs` (see
//! [`crate::device::signatures`]). And which of them a `vlx.target=` or a
//! `vlx-install --san` names by a stable name ([`pick`], [`resolve_san`]).

use std::path::{Path, PathBuf};

use cluster::Bytes;

/// A whole disk that could be the SAN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    /// Kernel name: `vda`, `sdb`, `nvme0n1`.
    pub name: String,
    pub path: PathBuf,
    pub size: Bytes,
    pub model: Option<String>,
    pub serial: Option<String>,
    /// The World Wide Name sysfs gives (`wwid`), e.g. `naa.5000c500a1b2c3d4`.
    pub wwn: Option<String>,
    /// What `wipefs` sees on it, filled by the caller.
    pub holds: Option<String>,
}

impl Disk {
    /// One line for a list: path, size, model, serial, contents.
    pub fn describe(&self) -> String {
        format!(
            "{:<14} {:>10}  {:<20} serial {:<16} {}",
            self.path.display(),
            self.size.to_string(),
            self.model.as_deref().unwrap_or("unknown model"),
            self.serial.as_deref().unwrap_or("none"),
            self.holds.as_deref().unwrap_or("")
        )
    }
}

/// Kernel names of devices that are never a SAN: loop and RAM disks,
/// device-mapper and md volumes, CD drives, floppies, NBD slots.
fn ignored(name: &str) -> bool {
    ["loop", "ram", "zram", "dm-", "md", "sr", "fd", "nbd"]
        .iter()
        .any(|p| name.starts_with(p))
}

fn read_trim(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// The whole disks under `sys_block` (normally `/sys/block`), by name,
/// without those named in `except` and without empty slots.
pub fn list(sys_block: &Path, except: &[String]) -> Vec<Disk> {
    let Ok(rd) = std::fs::read_dir(sys_block) else {
        return Vec::new();
    };
    let mut names: Vec<String> = rd
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !ignored(n) && !except.contains(n))
        .collect();
    names.sort();
    names
        .into_iter()
        .filter_map(|name| {
            let dir = sys_block.join(&name);
            // sysfs counts 512-byte units whatever the sector size.
            let sectors: u64 = read_trim(&dir.join("size"))?.parse().ok()?;
            if sectors == 0 {
                return None;
            }
            let model = read_trim(&dir.join("device/model"));
            let wwn = read_trim(&dir.join("wwid")).or_else(|| read_trim(&dir.join("device/wwid")));
            let serial = read_trim(&dir.join("serial"))
                .or_else(|| read_trim(&dir.join("device/serial")))
                .or_else(|| wwn.clone());
            Some(Disk {
                path: PathBuf::from("/dev").join(&name),
                name,
                size: Bytes(sectors * 512),
                model,
                serial,
                wwn,
                holds: None,
            })
        })
        .collect()
}

/// The whole disk a block device (disk or partition) belongs to, by
/// kernel name, from sysfs.
pub fn whole_disk(sys_class_block: &Path, name: &str) -> String {
    let dev = sys_class_block.join(name);
    if dev.join("partition").exists()
        && let Ok(real) = std::fs::canonicalize(&dev)
        && let Some(parent) = real.parent().and_then(|p| p.file_name())
    {
        return parent.to_string_lossy().into_owned();
    }
    name.to_owned()
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PickError {
    #[error("{arg}={spec}: no such disk; the disks are {known}")]
    NotFound {
        arg: &'static str,
        spec: String,
        known: String,
    },
    #[error("{arg}={spec}: {count} disks have that name; name one by path")]
    Ambiguous {
        arg: &'static str,
        spec: String,
        count: usize,
    },
}

/// Where udev keeps the stable names of disks.
pub const BY_ID: &str = "/dev/disk/by-id";

/// The disk `spec` (a `vlx.target=`) names: `/dev/NAME`, `NAME`,
/// `serial:SERIAL`, `wwn:WWN` (with or without its `naa.`/`eui.`/`t10.`
/// prefix, in any case), `by-id:ID` or `/dev/disk/by-id/ID`.
pub fn pick<'a>(disks: &'a [Disk], spec: &str) -> Result<&'a Disk, PickError> {
    pick_in(disks, spec, Path::new(BY_ID), "vlx.target")
}

/// [`pick`], with the by-id folder and the argument's name for messages.
pub fn pick_in<'a>(
    disks: &'a [Disk],
    spec: &str,
    by_id: &Path,
    arg: &'static str,
) -> Result<&'a Disk, PickError> {
    let by_id_name = spec
        .strip_prefix("by-id:")
        .or_else(|| spec.strip_prefix(BY_ID).and_then(|r| r.strip_prefix('/')));
    let hits: Vec<&Disk> = if let Some(serial) = spec.strip_prefix("serial:") {
        disks
            .iter()
            .filter(|d| d.serial.as_deref() == Some(serial))
            .collect()
    } else if let Some(wwn) = spec.strip_prefix("wwn:") {
        disks
            .iter()
            .filter(|d| d.wwn.as_deref().is_some_and(|w| same_wwn(w, wwn)))
            .collect()
    } else if let Some(id) = by_id_name {
        // udev's link points at the disk (or a partition of it: not a SAN).
        let target = std::fs::canonicalize(by_id.join(id)).ok();
        let name = target
            .as_deref()
            .and_then(Path::file_name)
            .map(|n| n.to_string_lossy().into_owned());
        disks
            .iter()
            .filter(|d| Some(&d.name) == name.as_ref())
            .collect()
    } else {
        let name = spec.strip_prefix("/dev/").unwrap_or(spec);
        disks.iter().filter(|d| d.name == name).collect()
    };
    match hits.as_slice() {
        [one] => Ok(one),
        [] => Err(PickError::NotFound {
            arg,
            spec: spec.to_owned(),
            known: if disks.is_empty() {
                "none".into()
            } else {
                disks
                    .iter()
                    .map(|d| {
                        let mut s = d.path.display().to_string();
                        if let Some(serial) = &d.serial {
                            s.push_str(&format!(" (serial:{serial})"));
                        }
                        s
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        }),
        many => Err(PickError::Ambiguous {
            arg,
            spec: spec.to_owned(),
            count: many.len(),
        }),
    }
}

/// Two WWNs are the same with or without the NAA/EUI/T10 prefix sysfs puts
/// before them (`naa.5000c500a1b2c3d4` and `0x5000c500a1b2c3d4`, as lsblk
/// shows it), in any case.
fn same_wwn(sysfs: &str, given: &str) -> bool {
    let bare = |w: &str| {
        let w = w.trim().to_ascii_lowercase();
        ["naa.", "eui.", "t10.", "0x"]
            .iter()
            .find_map(|p| w.strip_prefix(p).map(str::to_owned))
            .unwrap_or(w)
    };
    bare(sysfs) == bare(given)
}

/// A `--san` given by a stable name (`serial:`, `wwn:`, `by-id:`) is the
/// disk that name picks among the machine's disks; any other value is a
/// path, returned as it is.
pub fn resolve_san(san: &Path) -> Result<PathBuf, PickError> {
    let spec = san.to_string_lossy();
    if !["serial:", "wwn:", "by-id:"]
        .iter()
        .any(|p| spec.starts_with(p))
    {
        return Ok(san.to_owned());
    }
    let disks = list(Path::new("/sys/block"), &[]);
    pick_in(&disks, &spec, Path::new(BY_ID), "--san").map(|d| d.path.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_sys() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        let add = |name: &str, size: &str, serial: Option<&str>, model: Option<&str>| {
            let dir = d.path().join(name);
            std::fs::create_dir_all(dir.join("device")).unwrap();
            if name == "vdb" {
                std::fs::write(dir.join("wwid"), "naa.5000C500A1B2C3D4\n").unwrap();
            }
            std::fs::write(dir.join("size"), size).unwrap();
            if let Some(s) = serial {
                std::fs::write(dir.join("serial"), format!("{s}\n")).unwrap();
            }
            if let Some(m) = model {
                std::fs::write(dir.join("device/model"), format!("{m}   \n")).unwrap();
            }
        };
        add("vda", "409600\n", Some("MEDIA"), None);
        add("vdb", "16777216\n", Some("SAN0"), None);
        add("sda", "2048\n", None, Some("QEMU HARDDISK"));
        add("loop0", "2048\n", None, None);
        add("sr0", "2048\n", None, None);
        add("nbd0", "0\n", None, None);
        d
    }

    #[test]
    fn lists_whole_disks_with_their_facts() {
        let sys = fake_sys();
        let disks = list(sys.path(), &["vda".into()]);
        let names: Vec<&str> = disks.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["sda", "vdb"]);
        assert_eq!(disks[1].size, Bytes(8 << 30));
        assert_eq!(disks[1].serial.as_deref(), Some("SAN0"));
        assert_eq!(disks[0].model.as_deref(), Some("QEMU HARDDISK"));
        assert!(disks[1].describe().contains("/dev/vdb"));
    }

    #[test]
    fn picks_by_path_name_or_serial() {
        let sys = fake_sys();
        let disks = list(sys.path(), &[]);
        assert_eq!(pick(&disks, "/dev/vdb").unwrap().name, "vdb");
        assert_eq!(pick(&disks, "sda").unwrap().name, "sda");
        assert_eq!(pick(&disks, "serial:MEDIA").unwrap().name, "vda");
        let err = pick(&disks, "/dev/sdz").unwrap_err().to_string();
        assert!(
            err.contains("/dev/sdz") && err.contains("/dev/vdb"),
            "{err}"
        );
    }

    #[test]
    fn picks_by_wwn_and_by_id() {
        let sys = fake_sys();
        let disks = list(sys.path(), &[]);
        assert_eq!(disks[2].wwn.as_deref(), Some("naa.5000C500A1B2C3D4"));
        for spec in [
            "wwn:naa.5000c500a1b2c3d4",
            "wwn:0x5000c500a1b2c3d4",
            "wwn:5000C500A1B2C3D4",
        ] {
            assert_eq!(pick(&disks, spec).unwrap().name, "vdb", "{spec}");
        }
        let err = pick(&disks, "wwn:5000c500ffffffff").unwrap_err();
        assert!(matches!(err, PickError::NotFound { .. }), "{err}");

        // by-id links point at /dev/NAME; here at files named like them.
        let dev = tempfile::tempdir().unwrap();
        let by_id = dev.path().join("by-id");
        std::fs::create_dir(&by_id).unwrap();
        std::fs::write(dev.path().join("vdb"), "").unwrap();
        std::os::unix::fs::symlink("../vdb", by_id.join("virtio-SAN0")).unwrap();
        let got = pick_in(&disks, "by-id:virtio-SAN0", &by_id, "--san").unwrap();
        assert_eq!(got.name, "vdb");
        let err = pick_in(&disks, "by-id:virtio-NONE", &by_id, "--san")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("--san=by-id:virtio-NONE: no such disk"),
            "{err}"
        );
    }

    #[test]
    fn a_san_path_stays_a_path() {
        let p = Path::new("/tmp/san.img");
        assert_eq!(resolve_san(p).unwrap(), p);
    }
}

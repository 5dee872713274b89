//! The disks the installer environment sees, from sysfs: name, size,
//! model, serial; what is on them comes from `wipefs` (see
//! [`crate::device::signatures`]). And which of them a `vlx.target=` names.

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
            let serial = read_trim(&dir.join("serial"))
                .or_else(|| read_trim(&dir.join("device/serial")))
                .or_else(|| read_trim(&dir.join("device/wwid")));
            Some(Disk {
                path: PathBuf::from("/dev").join(&name),
                name,
                size: Bytes(sectors * 512),
                model,
                serial,
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
    #[error("vlx.target={spec}: no such disk; the disks are {known}")]
    NotFound { spec: String, known: String },
    #[error("vlx.target={spec}: {count} disks have that serial; name one by path")]
    Ambiguous { spec: String, count: usize },
}

/// The disk `spec` names: `/dev/NAME`, `NAME` or `serial:SERIAL`.
pub fn pick<'a>(disks: &'a [Disk], spec: &str) -> Result<&'a Disk, PickError> {
    let hits: Vec<&Disk> = match spec.strip_prefix("serial:") {
        Some(serial) => disks
            .iter()
            .filter(|d| d.serial.as_deref() == Some(serial))
            .collect(),
        None => {
            let name = spec.strip_prefix("/dev/").unwrap_or(spec);
            disks.iter().filter(|d| d.name == name).collect()
        }
    };
    match hits.as_slice() {
        [one] => Ok(one),
        [] => Err(PickError::NotFound {
            spec: spec.to_owned(),
            known: if disks.is_empty() {
                "none".into()
            } else {
                disks
                    .iter()
                    .map(|d| d.path.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        }),
        many => Err(PickError::Ambiguous {
            spec: spec.to_owned(),
            count: many.len(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_sys() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        let add = |name: &str, size: &str, serial: Option<&str>, model: Option<&str>| {
            let dir = d.path().join(name);
            std::fs::create_dir_all(dir.join("device")).unwrap();
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
}

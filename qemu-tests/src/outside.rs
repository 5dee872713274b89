//! What tools nobody here wrote say of an installed SAN image: `sgdisk -v`
//! of its partition table, `fsck.vfat -n` of its ESP and `e2fsck -fn` of
//! its ext4 volumes (meta, origin, shared). The image is attached as a
//! read-only loop device at the SAN's sector size for the table, and each
//! volume as a read-only loop device of its own byte range (`sfdisk -J`
//! says where; this host's loop driver makes no partition nodes), detached
//! again whatever happens.

use std::path::{Path, PathBuf};
use std::process::Command;

use contracts::names::label;

/// Why an outside tool did not accept the SAN, or could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum OutsideError {
    #[error("cannot run `{command}`: {source}")]
    Start {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` does not accept {san} ({status}):\n{output}")]
    Refused {
        command: String,
        san: PathBuf,
        status: String,
        output: String,
    },
    #[error("{san}: {what}")]
    Layout { san: PathBuf, what: String },
}

/// A loop device over the SAN, detached on drop.
struct Loop(String);

impl Drop for Loop {
    fn drop(&mut self) {
        // Nothing to report to: a device left attached is seen by the next
        // `losetup -a`, and the file behind it is a temporary one.
        let _ = Command::new("losetup").args(["-d", &self.0]).status();
    }
}

fn run(san: &Path, program: &str, args: &[&str]) -> Result<String, OutsideError> {
    let command = format!("{program} {}", args.join(" "));
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|source| OutsideError::Start {
            command: command.clone(),
            source,
        })?;
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        return Err(OutsideError::Refused {
            command,
            san: san.to_owned(),
            status: out.status.to_string(),
            output,
        });
    }
    Ok(output)
}

/// Runs the three tools over `san` (an image file of `sector`-byte
/// sectors); a summary line on success.
pub fn check_san(san: &Path, sector: u32) -> Result<String, OutsideError> {
    let path = san.to_string_lossy();
    let sector = sector.to_string();
    let whole = attach(san, &["--sector-size", &sector, &path])?;
    // sgdisk exits 0 even when it lists problems: its verdict is the line.
    let said = run(san, "sgdisk", &["-v", &whole.0])?;
    if !said.contains("No problems found") {
        return Err(OutsideError::Refused {
            command: format!("sgdisk -v {}", whole.0),
            san: san.to_owned(),
            status: "problems listed".into(),
            output: said,
        });
    }
    let table = run(san, "sfdisk", &["-J", &whole.0])?;
    drop(whole);
    let parts = partitions(&table).map_err(|what| OutsideError::Layout {
        san: san.to_owned(),
        what,
    })?;
    let volume = |name: &str| -> Result<Option<Loop>, OutsideError> {
        let Some(p) = parts.iter().find(|p| p.name == name) else {
            return Ok(None);
        };
        let offset = p.start.saturating_mul(p.sector).to_string();
        let size = p.size.saturating_mul(p.sector).to_string();
        attach(san, &["--offset", &offset, "--sizelimit", &size, &path]).map(Some)
    };
    let needed = |name: &str| -> Result<Loop, OutsideError> {
        volume(name)?.ok_or_else(|| OutsideError::Layout {
            san: san.to_owned(),
            what: format!("no partition {name} in its table"),
        })
    };
    run(san, "fsck.vfat", &["-n", &needed(label::ESP)?.0])?;
    let mut checked = vec!["sgdisk -v", "fsck.vfat -n vlx-esp"];
    for name in [label::META, label::ORIGIN] {
        run(san, "e2fsck", &["-fn", &needed(name)?.0])?;
    }
    checked.push("e2fsck -fn vlx-meta, vlx-origin");
    // The shared volume is optional in a profile.
    if let Some(dev) = volume(label::SHARED)? {
        run(san, "e2fsck", &["-fn", &dev.0])?;
        checked.push("e2fsck -fn vlx-shared");
    }
    Ok(format!("{} accept it", checked.join(", ")))
}

/// A read-only loop device over `san` with `args` (the file last).
fn attach(san: &Path, args: &[&str]) -> Result<Loop, OutsideError> {
    let mut all = vec!["--find", "--show", "--read-only"];
    all.extend_from_slice(args);
    Ok(Loop(run(san, "losetup", &all)?.trim().to_owned()))
}

/// One partition of `sfdisk -J`, in sectors of `sector` bytes.
#[derive(Debug, PartialEq, Eq)]
struct Part {
    name: String,
    start: u64,
    size: u64,
    sector: u64,
}

/// The named partitions of `sfdisk -J`'s table.
fn partitions(json: &str) -> Result<Vec<Part>, String> {
    let v: serde_json::Value = serde_json::from_str(json).map_err(|e| format!("sfdisk -J: {e}"))?;
    let t = &v["partitiontable"];
    let sector = t["sectorsize"]
        .as_u64()
        .ok_or("sfdisk -J names no sector size")?;
    let parts = t["partitions"]
        .as_array()
        .ok_or("sfdisk -J lists no partitions")?;
    Ok(parts
        .iter()
        .filter_map(|p| {
            Some(Part {
                name: p["name"].as_str()?.to_owned(),
                start: p["start"].as_u64()?,
                size: p["size"].as_u64()?,
                sector,
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_come_from_sfdisk_json() {
        let json = r#"{"partitiontable":{"label":"gpt","sectorsize":4096,"partitions":[
            {"node":"x1","start":256,"size":76800,"name":"vlx-esp"},
            {"node":"x2","start":77056,"size":65536,"name":"vlx-meta"},
            {"node":"x3","start":142592,"size":8}]}}"#;
        let p = partitions(json).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(
            p[1],
            Part {
                name: "vlx-meta".into(),
                start: 77056,
                size: 65536,
                sector: 4096
            }
        );
        assert!(partitions(r#"{"partitiontable":{"sectorsize":512}}"#).is_err());
    }
}

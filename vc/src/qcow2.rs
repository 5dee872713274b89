//! A qcow2 (version 3) overlay over a raw backing file, written directly:
//! a header, one refcount table, one refcount block and an empty L1 table,
//! four clusters in all, most of them holes. Creating a VM's disk is then a
//! few system calls, not a `qemu-img` process, so a VC of 256 VMs is created
//! about as fast as one of 2. `qemu-img check` and `qemu-img info` judge the
//! result in the tests.
//!
//! Format: QEMU's `docs/interop/qcow2.txt` (all fields big-endian).

use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

use anyhow::{Context, bail};

const MAGIC: u32 = 0x5146_49fb;
/// 64 KiB clusters, QEMU's default.
const CLUSTER_BITS: u32 = 16;
const CLUSTER: u64 = 1 << CLUSTER_BITS;
/// Version 3 header without optional fields.
const HEADER_LEN: u32 = 104;
/// Header extension: the backing file's format.
const EXT_BACKING_FORMAT: u32 = 0xe279_2aca;
/// 16-bit refcounts (refcount_order 4), QEMU's default.
const REFCOUNT_ORDER: u32 = 4;

/// Writes `path`: an overlay of `size` bytes on the raw image `backing`
/// (stored as given; pass an absolute path). Fails if `path` exists.
pub fn write_overlay(path: &Path, backing: &Path, size: u64) -> anyhow::Result<()> {
    let backing = backing
        .to_str()
        .with_context(|| format!("backing file {} is not UTF-8", backing.display()))?;
    // Clusters: 0 header, 1 refcount table, 2 refcount block, 3 L1 table.
    let l2_entries = CLUSTER / 8;
    let l1_size = size.div_ceil(CLUSTER * l2_entries).max(1);
    if l1_size * 8 > CLUSTER {
        bail!("an overlay of {size} bytes needs more than one L1 cluster");
    }
    let mut h: Vec<u8> = Vec::with_capacity(512);
    let ext_fmt = b"raw";
    let ext_len = 8 + ext_fmt.len().next_multiple_of(8) + 8;
    let backing_offset = u64::from(HEADER_LEN) + ext_len as u64;
    if backing_offset + backing.len() as u64 > CLUSTER || backing.len() > 1023 {
        bail!("backing file name {backing} is too long for a qcow2 header");
    }
    h.extend(MAGIC.to_be_bytes());
    h.extend(3u32.to_be_bytes());
    h.extend(backing_offset.to_be_bytes());
    h.extend(u32::try_from(backing.len())?.to_be_bytes());
    h.extend(CLUSTER_BITS.to_be_bytes());
    h.extend(size.to_be_bytes());
    h.extend(0u32.to_be_bytes()); // no encryption
    h.extend(u32::try_from(l1_size)?.to_be_bytes());
    h.extend((3 * CLUSTER).to_be_bytes()); // L1 table
    h.extend(CLUSTER.to_be_bytes()); // refcount table
    h.extend(1u32.to_be_bytes()); // refcount table clusters
    h.extend(0u32.to_be_bytes()); // snapshots
    h.extend(0u64.to_be_bytes()); // snapshots offset
    h.extend(0u64.to_be_bytes()); // incompatible features
    h.extend(0u64.to_be_bytes()); // compatible features
    h.extend(0u64.to_be_bytes()); // autoclear features
    h.extend(REFCOUNT_ORDER.to_be_bytes());
    h.extend(HEADER_LEN.to_be_bytes());
    debug_assert_eq!(h.len(), HEADER_LEN as usize);
    h.extend(EXT_BACKING_FORMAT.to_be_bytes());
    h.extend(u32::try_from(ext_fmt.len())?.to_be_bytes());
    h.extend(ext_fmt);
    h.resize(h.len().next_multiple_of(8), 0);
    h.extend(0u32.to_be_bytes()); // end of extensions
    h.extend(0u32.to_be_bytes());
    h.extend(backing.as_bytes());

    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    let w = |f: &mut std::fs::File, at: u64, data: &[u8]| -> anyhow::Result<()> {
        f.seek(SeekFrom::Start(at))?;
        f.write_all(data)
            .with_context(|| format!("writing {}", path.display()))
    };
    w(&mut f, 0, &h)?;
    // Refcount table: its one block is cluster 2.
    w(&mut f, CLUSTER, &(2 * CLUSTER).to_be_bytes())?;
    // Refcount block: clusters 0 to 3 are used once each.
    w(&mut f, 2 * CLUSTER, &[0, 1, 0, 1, 0, 1, 0, 1])?;
    // The L1 table is all zeros (every read goes to the backing file): a
    // hole up to the end of cluster 3.
    f.set_len(4 * CLUSTER)
        .with_context(|| format!("sizing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;

    /// `qemu-img` (Debian qemu-utils) is the judge.
    #[test]
    fn qemu_img_accepts_the_overlay() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("base.raw");
        let f = std::fs::File::create(&base).unwrap();
        f.set_len(64 << 20).unwrap();
        let ov = dir.path().join("disk.qcow2");
        write_overlay(&ov, &base, 64 << 20).unwrap();
        let check = Command::new("qemu-img")
            .args(["check", "-f", "qcow2"])
            .arg(&ov)
            .output()
            .expect("qemu-img (Debian qemu-utils)");
        assert!(
            check.status.success(),
            "{}{}",
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr)
        );
        let info = Command::new("qemu-img")
            .args(["info", "--output=json"])
            .arg(&ov)
            .output()
            .unwrap();
        assert!(info.status.success());
        let v: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
        assert_eq!(v["format"], "qcow2");
        assert_eq!(v["virtual-size"], 64 << 20);
        assert_eq!(v["backing-filename"], base.to_str().unwrap());
        assert_eq!(v["backing-filename-format"], "raw");
        assert_eq!(v["format-specific"]["data"]["compat"], "1.1");
        // A write lands in the overlay and the base stays zero.
        let io = Command::new("qemu-io")
            .args(["-f", "qcow2", "-c", "write -P 0x5a 1M 64k"])
            .arg(&ov)
            .output()
            .expect("qemu-io (Debian qemu-utils)");
        assert!(
            io.status.success(),
            "{}",
            String::from_utf8_lossy(&io.stderr)
        );
        let check = Command::new("qemu-img")
            .args(["check"])
            .arg(&ov)
            .output()
            .unwrap();
        assert!(
            check.status.success(),
            "{}",
            String::from_utf8_lossy(&check.stdout)
        );
        let base_bytes = std::fs::read(&base).unwrap();
        assert!(base_bytes.iter().all(|&b| b == 0), "the base was written");
        // An existing file is never overwritten.
        assert!(write_overlay(&ov, &base, 64 << 20).is_err());
    }
}

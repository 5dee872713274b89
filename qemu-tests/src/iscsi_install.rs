//! The installer commands of an iSCSI rehearsal: the first blade boots an
//! installer environment (the install media's, `imagebuilder::media::env`,
//! which carries open-iscsi's `iscsid` and `iscsiadm` and the iSCSI and
//! NIC modules) and
//! runs `vlx-install apply --san iscsi://PORTAL:PORT/IQN/LUN` (step 1) or
//! `vlx-install reset-node --san iscsi://...` (step 7) through its storage
//! NIC, as an administrator on the first blade would. The host cannot do
//! it itself: its kernel is no iSCSI initiator (no `iscsi_tcp`).
//!
//! What the installer reads (the image directory, the rig's copy of the
//! cluster profile and the host profile and overlays it names) goes on a
//! data disk, each at its absolute path under the disk's root; the guest
//! mounts the disk read-only on `/data` and links every one of those
//! paths to its copy, so that the profile's absolute paths hold.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;

use cluster::MacAddr;
use imagebuilder::image::kernel::{self as kernels, ModuleIndex};
use imagebuilder::image::libs::Resolver;
use imagebuilder::image::tree::{Content, Entry};
use imagebuilder::media::env;

use crate::iscsi::IscsiRig;

/// What the installer guest runs.
#[derive(Debug, Clone, Copy)]
pub enum Action<'a> {
    /// `vlx-install apply --yes --test-image --cluster PROFILE --image
    /// IMAGE` (rigs rehearse with test images such as tiny-iscsi; the flag
    /// only allows one).
    Apply { profile: &'a Path, image: &'a Path },
    /// `vlx-install reset-node --yes NODE`.
    ResetNode { node: &'a str },
}

impl Action<'_> {
    /// The command line, onto the SAN at `url`, with `--chap FILE` when
    /// the target asks for CHAP.
    fn command(&self, url: &str, chap: Option<&Path>) -> String {
        let chap = chap
            .map(|c| format!(" --chap '{}'", c.display()))
            .unwrap_or_default();
        match self {
            Action::Apply { profile, image } => format!(
                "vlx-install apply --yes --test-image --cluster '{}' --image '{}' --san '{url}'{chap}",
                profile.display(),
                image.display(),
            ),
            Action::ResetNode { node } => {
                format!("vlx-install reset-node --yes --san '{url}'{chap} '{node}'")
            }
        }
    }
}

/// What the guest prints after trying the SAN without CHAP, before the
/// install with it: `rc=N` follows (the target must refuse the login).
pub const WITHOUT_CHAP_RC: &str = "vlx-rig: without CHAP rc=";

/// What the guest prints when the installer has ended: `rc=N` follows.
pub const INSTALL_RC: &str = "vlx-rig: install rc=";
/// What it prints next: the iSCSI sessions still open.
pub const SESSIONS_LEFT: &str = "vlx-rig: sessions left=";

/// Room on the data disk beyond its files (ext4's own metadata).
const DATA_SLACK: u64 = 64 << 20;

/// The guest's `/init`. Placeholders: `@MAC@`, `@ADDR@`, `@PREFIX@`,
/// `@LINKS@`, `@APPLY@`, `@AFTER@`.
const INIT: &str = r#"#!/bin/sh
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
exec </dev/console >/dev/console 2>&1
mkdir -p /run/lock/iscsi /var/lib/iscsi /etc/iscsi/nodes /tmp /data
while read -r m; do
    insmod "$m" || echo "vlx-rig: cannot load $m"
done < /lib/rig-modules/order
ip link set lo up
nic=
for d in /sys/class/net/*; do
    [ "$(cat "$d/address")" = "@MAC@" ] && nic=${d##*/}
done
if [ -z "$nic" ]; then
    echo "vlx-rig: no storage NIC with MAC @MAC@"
    echo "vlx-rig: install rc=255"
    poweroff -f
fi
ip link set "$nic" up
ip addr add @ADDR@/@PREFIX@ dev "$nic"
mount -t ext4 -o ro /dev/vda /data || echo "vlx-rig: cannot mount the data disk"
@LINKS@
iscsid -f &
sleep 1
echo "vlx-rig: running vlx-install through iSCSI from $nic (@ADDR@)"
@APPLY@
echo "vlx-rig: install rc=$?"
echo "vlx-rig: sessions left=[$(iscsiadm -m session 2>/dev/null | tr '\n' ' ')]"
@AFTER@
sync
poweroff -f
"#;

/// The guest's files, made by [`build`].
#[derive(Debug, Clone)]
pub struct Guest {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    /// The data disk (ext4).
    pub data: PathBuf,
}

/// The installer's URL of the SAN.
pub fn url(rig: &IscsiRig) -> String {
    format!(
        "iscsi://{}:{}/{}/{}",
        rig.portal, rig.port, rig.target, rig.lun
    )
}

/// Builds the guest in `dir` (`vmlinuz`, `initramfs.img`, `data.ext4`, as
/// the plan names them; a guest built before is replaced): its kernel and
/// initramfs, and the data disk carrying `carry` (absolute paths of files
/// and folders). The guest logs in through the NIC with `mac` at `addr`
/// and runs `action` on the SAN, with `--chap FILE` when `chap` names
/// the installer's CHAP file (which `carry` must hold).
pub fn build(
    dir: &Path,
    rig: &IscsiRig,
    nic: (MacAddr, Ipv4Addr),
    action: Action<'_>,
    chap: Option<&Path>,
    carry: &[PathBuf],
) -> Result<Guest, String> {
    build_then(dir, rig, nic, action, chap, carry, "")
}

/// [`build`], with `after` (shell lines) run once the installer has ended
/// and its sessions are listed, before the guest powers off: how the
/// benchmark measures `dd` to the same LUN in the same guest.
pub fn build_then(
    dir: &Path,
    rig: &IscsiRig,
    (mac, addr): (MacAddr, Ipv4Addr),
    action: Action<'_>,
    chap: Option<&Path>,
    carry: &[PathBuf],
    after: &str,
) -> Result<Guest, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let kernel = kernels::cached_or_fetch(kernels::DEFAULT_PACKAGE).map_err(|e| e.to_string())?;
    let installer = crate::tools::bin_dir().join(crate::tools::VLX_INSTALL);
    let index = ModuleIndex::load(&kernel).map_err(|e| e.to_string())?;
    let err = |e: imagebuilder::Error| e.to_string();
    // The install media's environment, iSCSI initiator and modules
    // included; the rig's /init loads the modules itself.
    let (modules, _) = env::modules(&index, &[]).map_err(err)?;
    let mut t = env::plan(&installer, &kernel, &index, &modules, &Resolver::host())
        .map_err(|e| format!("the installer environment: {e}"))?;
    let file = |bytes: Vec<u8>, mode| Entry::file(Content::Bytes(bytes), mode);
    for d in ["data", "lib/rig-modules"] {
        t.mkdir_p(Path::new(d)).map_err(err)?;
    }
    let order: String = modules
        .iter()
        .map(|m| format!("/lib/modules/{}/{}\n", kernel.release, m.plain_path()))
        .collect();
    t.insert(
        Path::new("lib/rig-modules/order"),
        file(order.into(), 0o644),
    )
    .map_err(err)?;
    let mut links = String::new();
    for p in carry {
        let p = p.display();
        let _ = writeln!(
            links,
            "mkdir -p \"$(dirname '{p}')\" && ln -sfn '/data{p}' '{p}'"
        );
    }
    let mut apply = action.command(&url(rig), chap);
    // Before the install, the same login without CHAP: the target must
    // refuse it (and the installer leave no session).
    if let (Some(_), Action::Apply { .. }) = (chap, action) {
        apply = format!(
            "vlx-install status --san '{}'\necho \"{WITHOUT_CHAP_RC}$?\"\n{apply}",
            url(rig)
        );
    }
    let init = INIT
        .replace("@MAC@", &mac.to_string())
        .replace("@ADDR@", &addr.to_string())
        .replace("@PREFIX@", &rig.prefix.to_string())
        .replace("@LINKS@", links.trim_end())
        .replace("@APPLY@", &apply)
        .replace("@AFTER@", after.trim_end());
    t.insert(Path::new("init"), file(init.into(), 0o755))
        .map_err(err)?;
    let vmlinuz = dir.join("vmlinuz");
    std::fs::copy(&kernel.vmlinuz, &vmlinuz)
        .map_err(|e| format!("{} to {}: {e}", kernel.vmlinuz.display(), vmlinuz.display()))?;
    let initrd = dir.join("initramfs.img");
    imagebuilder::image::initramfs::write(&t, &initrd, 0).map_err(err)?;
    let data = data_disk(dir, carry)?;
    Ok(Guest {
        kernel: vmlinuz,
        initrd,
        data,
    })
}

/// An ext4 image holding every path of `carry` at its absolute path.
fn data_disk(dir: &Path, carry: &[PathBuf]) -> Result<PathBuf, String> {
    let stage = dir.join("data");
    // A guest built before (step 1's, when step 7 builds its own).
    match std::fs::remove_dir_all(&stage) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(format!("{}: {e}", stage.display()));
        }
        _ => {}
    }
    std::fs::create_dir_all(&stage).map_err(|e| format!("{}: {e}", stage.display()))?;
    let mut bytes = 0u64;
    for p in carry {
        let rel = p.strip_prefix("/").unwrap_or(p);
        let to = stage.join(rel);
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        run(Command::new("cp").arg("-a").arg(p).arg(&to))?;
        bytes += size_of_tree(&to);
    }
    let disk = dir.join("data.ext4");
    match std::fs::remove_file(&disk) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(format!("{}: {e}", disk.display()));
        }
        _ => {}
    }
    let size = (bytes + bytes / 4 + DATA_SLACK) >> 20;
    run(Command::new("mke2fs")
        .args(["-q", "-F", "-t", "ext4", "-d"])
        .arg(&stage)
        .arg(&disk)
        .arg(format!("{size}M")))?;
    Ok(disk)
}

fn size_of_tree(p: &Path) -> u64 {
    let Ok(m) = std::fs::symlink_metadata(p) else {
        return 0;
    };
    if m.is_dir() {
        std::fs::read_dir(p)
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .map(|e| size_of_tree(&e.path()))
                    .sum()
            })
            .unwrap_or(0)
    } else {
        m.len()
    }
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let o = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if !o.status.success() {
        return Err(format!(
            "{cmd:?} failed ({}): {}",
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_installer_logs_in_to_the_lun_of_the_rehearsal() {
        let rig = IscsiRig {
            switch: "/r/storage".into(),
            portal: Ipv4Addr::new(10, 10, 0, 250),
            port: 3260,
            prefix: 24,
            target: "iqn.2007-01.it.unipi.di:virtualinux.san0".into(),
            lun: 1,
            rom: crate::iscsi::IPXE_LKRN.into(),
            chap: None,
        };
        assert_eq!(
            url(&rig),
            "iscsi://10.10.0.250:3260/iqn.2007-01.it.unipi.di:virtualinux.san0/1"
        );
        let apply = Action::Apply {
            profile: Path::new("/p/c.toml"),
            image: Path::new("/i"),
        };
        assert_eq!(
            apply.command(&url(&rig), None),
            "vlx-install apply --yes --test-image --cluster '/p/c.toml' --image '/i' --san \
             'iscsi://10.10.0.250:3260/iqn.2007-01.it.unipi.di:virtualinux.san0/1'"
        );
        assert_eq!(
            Action::ResetNode { node: "node3" }.command("iscsi://a/b", Some(Path::new("/c"))),
            "vlx-install reset-node --yes --san 'iscsi://a/b' --chap '/c' 'node3'"
        );
    }
}

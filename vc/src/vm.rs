//! The VM executor: qcow2 overlays over a guest's read-only base image, and
//! QEMU processes driven over QMP. QEMU runs daemonized with its monitor on
//! a UNIX socket, so a VM outlives the agent that started it.
//!
//! Files of a VM (`<vc>/<vm>` below):
//!
//! | path | what |
//! |---|---|
//! | `SHARED/guests/<guest>/base.raw` | the guest's root, ext4, read-only (mode 0444) |
//! | `SHARED/guests/<guest>/vmlinuz`, `initrd.img` | what its VMs boot (direct kernel boot) |
//! | `SHARED/vcs/<vc>/<vm>/disk.qcow2` | the VM's overlay on `base.raw` |
//! | `SHARED/vcs/<vc>/<vm>/save.state` | its saved state (QMP migration to a file) while saved |
//! | `SHARED/vcs/<vc>/<vm>/console.log` | everything it wrote on its serial console |
//! | `RUN/<vc>/<vm>/qmp.sock`, `console.sock`, `qemu.pid` | local to the blade that runs it |

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::json;

use crate::model::{VcName, VcSpec, VmIndex};
use crate::qmp::Qmp;
use crate::state::{VcNetRecord, VmRecord};

/// How a VM's CPU is emulated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    Tcg,
    Kvm,
}

impl Accel {
    fn arg(self) -> &'static str {
        match self {
            Accel::Tcg => "tcg",
            Accel::Kvm => "kvm",
        }
    }
}

/// How long a save (migration to a file) may take: 256 MiB on a slow
/// shared volume.
const SAVE_WAIT: Duration = Duration::from_secs(300);
/// How long an incoming migration may take to load.
const LOAD_WAIT: Duration = Duration::from_secs(300);
/// How often migration progress is polled.
const POLL: Duration = Duration::from_millis(100);

/// What this blade's QEMU processes need to know.
#[derive(Debug, Clone)]
pub struct Host {
    pub shared: PathBuf,
    pub run: PathBuf,
    pub accel: Accel,
}

/// The kernel argument that tells a guest where its VC's share is
/// (`STORAGE:DIR`, `vc_net::render::share_source`): the tiny guest mounts
/// it at `/vc` (`vc_net::render::GUEST_SHARED_MOUNT`).
pub const SHARE_ARG: &str = "vlx.share";

/// The QEMU arguments of a VM's network: a virtio NIC with the VM's MAC on
/// its tap (`vx` + the MAC's hex, made by the blade's agent before QEMU
/// starts, `vc_net::apply`), when its VC has a network; no NIC otherwise.
/// A saved VM is restored with the same devices, as migration needs.
pub fn nic_args(vm: &VmRecord, net: Option<&VcNetRecord>) -> Vec<String> {
    if net.is_none() {
        return vec!["-nic".into(), "none".into()];
    }
    vec![
        "-netdev".into(),
        format!(
            "tap,id=vcnet,ifname={},script=no,downscript=no",
            vc_net::model::tap_name(vm.mac)
        ),
        "-device".into(),
        format!("virtio-net-pci,netdev=vcnet,mac={}", vm.mac),
    ]
}

impl Host {
    pub fn guest_dir(&self, guest: &str) -> PathBuf {
        self.shared.join("guests").join(guest)
    }

    pub fn vc_dir(&self, vc: &VcName) -> PathBuf {
        self.shared.join("vcs").join(vc.as_str())
    }

    pub fn vm_dir(&self, vc: &VcName, vm: VmIndex) -> PathBuf {
        self.vc_dir(vc).join(vm.name())
    }

    pub fn run_dir(&self, vc: &VcName, vm: VmIndex) -> PathBuf {
        self.run.join(vc.as_str()).join(vm.name())
    }

    pub fn disk(&self, vc: &VcName, vm: VmIndex) -> PathBuf {
        self.vm_dir(vc, vm).join("disk.qcow2")
    }

    pub fn save_file(&self, vc: &VcName, vm: VmIndex) -> PathBuf {
        self.vm_dir(vc, vm).join("save.state")
    }

    pub fn console_log(&self, vc: &VcName, vm: VmIndex) -> PathBuf {
        self.vm_dir(vc, vm).join("console.log")
    }

    pub fn qmp_path(&self, vc: &VcName, vm: VmIndex) -> PathBuf {
        self.run_dir(vc, vm).join("qmp.sock")
    }

    /// The VM's overlay on its guest's base image, made when absent. Costs
    /// the same for any base size: only qcow2 metadata is written
    /// ([`crate::qcow2`], the same file `qemu-img create -f qcow2 -F raw -b
    /// BASE` makes).
    pub fn ensure_overlay(&self, spec: &VcSpec, vm: VmIndex) -> anyhow::Result<PathBuf> {
        let disk = self.disk(&spec.name, vm);
        if disk.exists() {
            return Ok(disk);
        }
        let base = self.guest_dir(&spec.guest).join("base.raw");
        if !base.exists() {
            bail!("guest {} has no base image {}", spec.guest, base.display());
        }
        let dir = self.vm_dir(&spec.name, vm);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let tmp = dir.join(".disk.qcow2.tmp");
        match std::fs::remove_file(&tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing {}", tmp.display())),
        }
        let base = std::fs::canonicalize(&base)
            .with_context(|| format!("resolving {}", base.display()))?;
        let size = std::fs::metadata(&base)
            .with_context(|| format!("reading the size of {}", base.display()))?
            .len();
        crate::qcow2::write_overlay(&tmp, &base, size)?;
        std::fs::rename(&tmp, &disk).with_context(|| format!("renaming to {}", disk.display()))?;
        Ok(disk)
    }

    /// The VM's monitor when its QEMU runs here; `None` when it does not.
    pub fn adopt(&self, vc: &VcName, vm: VmIndex) -> Option<Qmp> {
        let p = self.qmp_path(vc, vm);
        if !p.exists() {
            return None;
        }
        Qmp::connect(&p).ok()
    }

    /// Starts the VM's QEMU, daemonized; from its saved state when
    /// `incoming`, else booting from its overlay.
    pub fn start(&self, spec: &VcSpec, rec: &VmRecord, incoming: bool) -> anyhow::Result<()> {
        self.start_net(spec, rec, None, None, incoming)
    }

    /// [`Host::start`] with the VM's NIC on its tap when its VC has a
    /// network ([`nic_args`]), and its VC's share on the command line
    /// (`vlx.share=STORAGE:DIR`, [`SHARE_ARG`]) when one is given.
    pub fn start_net(
        &self,
        spec: &VcSpec,
        rec: &VmRecord,
        net: Option<&VcNetRecord>,
        share: Option<&str>,
        incoming: bool,
    ) -> anyhow::Result<()> {
        let vc = &spec.name;
        let mut append = format!("console=ttyS0,115200 vlx.vm={vc}/{} quiet", rec.vm);
        if let Some(share) = share {
            if share.chars().any(char::is_whitespace) {
                bail!("{vc}'s share `{share}` has white space: it cannot be a kernel argument");
            }
            append.push_str(&format!(" {SHARE_ARG}={share}"));
        }
        let disk = self.ensure_overlay(spec, rec.vm)?;
        let g = self.guest_dir(&spec.guest);
        let run_dir = self.run_dir(vc, rec.vm);
        std::fs::create_dir_all(&run_dir)
            .with_context(|| format!("creating {}", run_dir.display()))?;
        let qmp = self.qmp_path(vc, rec.vm);
        let console = run_dir.join("console.sock");
        for stale in [&qmp, &console] {
            match std::fs::remove_file(stale) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).with_context(|| format!("removing {}", stale.display())),
            }
        }
        let mut cmd = Command::new("qemu-system-x86_64");
        cmd.args(["-name", &format!("{vc}/{}", rec.vm)])
            .args(["-accel", self.accel.arg()])
            .args(["-m", &format!("{}M", spec.memory.get() >> 20)])
            .args(["-smp", &spec.vcpus.to_string()])
            .args(["-nodefaults", "-no-user-config", "-display", "none"])
            .arg("-kernel")
            .arg(g.join("vmlinuz"))
            .arg("-initrd")
            .arg(g.join("initrd.img"))
            .args(["-append", &append])
            .arg("-drive")
            .arg(format!("file={},format=qcow2,if=virtio", disk.display()))
            .arg("-chardev")
            .arg(format!(
                "socket,id=con,path={},server=on,wait=off,logfile={},logappend=on",
                console.display(),
                self.console_log(vc, rec.vm).display()
            ))
            .args(["-serial", "chardev:con"])
            .arg("-qmp")
            .arg(format!("unix:{},server=on,wait=off", qmp.display()))
            .args(nic_args(rec, net))
            .arg("-pidfile")
            .arg(run_dir.join("qemu.pid"))
            .arg("-daemonize");
        if incoming {
            cmd.arg("-incoming")
                .arg(format!("exec:cat {}", self.save_file(vc, rec.vm).display()));
        }
        run(&mut cmd)?;
        if incoming {
            self.finish_incoming(vc, rec.vm)?;
        }
        Ok(())
    }

    /// Waits for an incoming migration to load, resumes the VM, and drops
    /// the saved state (a later cold start must boot from the overlay, not
    /// from a state older than the disk).
    fn finish_incoming(&self, vc: &VcName, vm: VmIndex) -> anyhow::Result<()> {
        let mut q = Qmp::connect(&self.qmp_path(vc, vm))?;
        let deadline = Instant::now() + LOAD_WAIT;
        loop {
            let s = q.status()?;
            if s != "inmigrate" {
                break;
            }
            if Instant::now() > deadline {
                bail!("{vc}/{vm}: loading the saved state took over {LOAD_WAIT:?}");
            }
            std::thread::sleep(POLL);
        }
        if q.status()? != "running" {
            q.execute("cont", json!({}))?;
        }
        let save = self.save_file(vc, vm);
        std::fs::remove_file(&save).with_context(|| format!("removing {}", save.display()))
    }

    /// Saves the VM's state to the shared volume and ends its QEMU.
    pub fn save(&self, vc: &VcName, vm: VmIndex) -> anyhow::Result<()> {
        let save = self.save_file(vc, vm);
        // The state file is renamed into place only after a completed
        // migration and removed by the restore: when it is there, this VM
        // is saved already, and a QEMU still seen is one that is quitting
        // (a round that looked at it before it closed its monitor).
        if save.exists() {
            if let Some(q) = self.adopt(vc, vm) {
                // Quitting anyway: a monitor that closes under us is the
                // end we want.
                let _ = q.quit();
            }
            return Ok(());
        }
        let tmp = save.with_extension("tmp");
        let Some(mut q) = self.adopt(vc, vm) else {
            bail!("{vc}/{vm} does not run on this blade");
        };
        q.execute("stop", json!({}))?;
        q.execute(
            "migrate",
            json!({ "uri": format!("exec:cat > {}", tmp.display()) }),
        )?;
        let deadline = Instant::now() + SAVE_WAIT;
        loop {
            match q.migration_status()? {
                (Some(s), _) if s == "completed" => break,
                (Some(s), why) if s == "failed" || s == "cancelled" => bail!(
                    "{vc}/{vm}: saving its state {s}: {}",
                    why.as_deref().unwrap_or("QEMU gave no reason")
                ),
                _ => {}
            }
            if Instant::now() > deadline {
                bail!("{vc}/{vm}: saving took over {SAVE_WAIT:?}");
            }
            std::thread::sleep(POLL);
        }
        std::fs::rename(&tmp, &save).with_context(|| format!("renaming to {}", save.display()))?;
        q.quit()
    }

    /// Ends the VM's QEMU if it runs here.
    pub fn stop(&self, vc: &VcName, vm: VmIndex) -> anyhow::Result<()> {
        match self.adopt(vc, vm) {
            Some(q) => q.quit(),
            None => Ok(()),
        }
    }

    /// Removes the VM's files (overlay, saved state, console log, sockets).
    pub fn remove(&self, vc: &VcName, vm: VmIndex) -> anyhow::Result<()> {
        for d in [self.vm_dir(vc, vm), self.run_dir(vc, vm)] {
            match std::fs::remove_dir_all(&d) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).with_context(|| format!("removing {}", d.display())),
            }
        }
        for d in [self.vc_dir(vc), self.run.join(vc.as_str())] {
            // The VC's folder goes with its last VM; others may remain.
            let _ = std::fs::remove_dir(&d);
        }
        Ok(())
    }

    /// Forgets a VM that no longer runs here (its run folder).
    pub fn forget(&self, vc: &VcName, vm: VmIndex) -> anyhow::Result<()> {
        let d = self.run_dir(vc, vm);
        match std::fs::remove_dir_all(&d) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing {}", d.display())),
        }
        let _ = std::fs::remove_dir(self.run.join(vc.as_str()));
        Ok(())
    }

    /// The VMs that have a run folder on this blade, as (VC, VM).
    pub fn local_vms(&self) -> Vec<(VcName, VmIndex)> {
        let mut out = Vec::new();
        let Ok(vcs) = std::fs::read_dir(&self.run) else {
            return out;
        };
        for vc in vcs.flatten() {
            let Ok(name) = vc.file_name().to_string_lossy().parse::<VcName>() else {
                continue;
            };
            let Ok(vms) = std::fs::read_dir(vc.path()) else {
                continue;
            };
            for vm in vms.flatten() {
                if let Ok(i) = vm.file_name().to_string_lossy().parse::<VmIndex>() {
                    out.push((name.clone(), i));
                }
            }
        }
        out.sort();
        out
    }
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let line = format!("{cmd:?}");
    let o = cmd.output().with_context(|| format!("running {line}"))?;
    if !o.status.success() {
        bail!(
            "{line} failed ({}): {}",
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        );
    }
    Ok(())
}

/// Imports a guest: its tarball into `base.raw` (ext4 of `size` bytes,
/// made read-only), and the kernel and initramfs its VMs boot.
pub fn import_guest(
    shared: &Path,
    guest: &str,
    tarball: &Path,
    kernel: &Path,
    initrd: &Path,
    size: cluster::Bytes,
) -> anyhow::Result<PathBuf> {
    let dir = shared.join("guests").join(guest);
    if dir.join("base.raw").exists() {
        bail!("guest {guest} is imported already ({})", dir.display());
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let tree = dir.join(".tree");
    let _ = std::fs::remove_dir_all(&tree);
    std::fs::create_dir_all(&tree).with_context(|| format!("creating {}", tree.display()))?;
    run(Command::new("tar")
        .arg("-xf")
        .arg(tarball)
        .arg("-C")
        .arg(&tree)
        .arg("--numeric-owner"))?;
    let tmp = dir.join(".base.raw.tmp");
    let _ = std::fs::remove_file(&tmp);
    run(Command::new("mke2fs")
        .args(["-q", "-t", "ext4", "-L", "vlx-guest", "-d"])
        .arg(&tree)
        .arg(&tmp)
        .arg(format!("{}k", size.get() / 1024)))?;
    std::fs::remove_dir_all(&tree).with_context(|| format!("removing {}", tree.display()))?;
    for (src, name) in [(kernel, "vmlinuz"), (initrd, "initrd.img")] {
        std::fs::copy(src, dir.join(name))
            .with_context(|| format!("copying {} into {}", src.display(), dir.display()))?;
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o444))
        .with_context(|| format!("making {} read-only", tmp.display()))?;
    let base = dir.join("base.raw");
    std::fs::rename(&tmp, &base).with_context(|| format!("renaming to {}", base.display()))?;
    Ok(base)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vm_of_a_vc_with_a_network_gets_its_tap_and_mac() {
        let rec: VmRecord =
            serde_json::from_str(r#"{"vm":2,"blade":"blade01","mac":"06:12:34:56:00:02"}"#)
                .expect("record");
        assert_eq!(nic_args(&rec, None), ["-nic", "none"]);
        let net: VcNetRecord = serde_json::from_str(r#"{"subnet":"10.200.0.0/24"}"#).expect("net");
        assert_eq!(
            nic_args(&rec, Some(&net)),
            [
                "-netdev",
                "tap,id=vcnet,ifname=vx061234560002,script=no,downscript=no",
                "-device",
                "virtio-net-pci,netdev=vcnet,mac=06:12:34:56:00:02",
            ]
        );
    }
}

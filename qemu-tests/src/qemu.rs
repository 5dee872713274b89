//! One blade's QEMU command line, as a plain value.
//!
//! [`Machine`] says what a blade is (firmware, memory, NIC, disks, where it
//! boots from, where its consoles go); [`Machine::argv`] turns it into the
//! arguments of `qemu-system-x86_64`. Nothing here starts a process.

use std::fmt;
use std::path::{Path, PathBuf};

use cluster::MacAddr;
use serde::Serialize;

/// The QEMU program the rig runs.
pub const QEMU: &str = "qemu-system-x86_64";

/// Firmware a blade runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Firmware {
    /// SeaBIOS, QEMU's default. Boots in a fraction of a second under TCG.
    Bios,
    /// OVMF: UEFI, on a pflash pair (shared code, per-blade variables).
    Uefi,
}

impl fmt::Display for Firmware {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Firmware::Bios => "bios",
            Firmware::Uefi => "uefi",
        })
    }
}

/// How QEMU runs the guest's CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    Kvm,
    Tcg,
}

impl fmt::Display for Accel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        })
    }
}

/// Where a blade boots from when it powers on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum BootFrom {
    /// The firmware's disk boot: the SAN's ESP (cold start). The NIC has no
    /// option ROM, so that nothing waits on a network nobody serves yet.
    Disk,
    /// The firmware's network boot: DHCP and iPXE from any live node.
    Network,
    /// A kernel and initramfs handed to the firmware by QEMU (`-kernel`):
    /// for testing the rig itself with small images.
    Kernel {
        kernel: PathBuf,
        initrd: PathBuf,
        append: String,
    },
    /// Install media (`vlx-image media`), first in the boot order; the SAN
    /// stays attached, with the serial number [`SAN_SERIAL`] so that the
    /// installer can be told which disk it is.
    Media(Media),
    /// A NIC boot ROM with stored settings, as an iSCSI-booting blade has:
    /// iPXE (`rom`, the Linux-loadable `ipxe.lkrn`, given to the firmware
    /// with `-kernel`) runs `script` (its command line, which it executes
    /// as a script): a fixed address on the storage NIC and `sanboot` of
    /// the target, which publishes an iBFT and boots the LUN's MBR.
    Sanboot { rom: PathBuf, script: String },
}

/// Install media in a blade.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "path", rename_all = "lowercase")]
pub enum Media {
    /// The USB image (`NAME.img`), as a virtio disk: the Debian cloud
    /// kernel has no USB storage driver; the firmware boots it the same.
    Usb(PathBuf),
    /// The ISO (`NAME.iso`) in an IDE CD drive.
    Cd(PathBuf),
}

/// The SAN's serial number when a blade boots install media.
pub const SAN_SERIAL: &str = "vlx-san";

impl fmt::Display for BootFrom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BootFrom::Disk => f.write_str("disk"),
            BootFrom::Network => f.write_str("network"),
            BootFrom::Kernel { kernel, .. } => write!(f, "kernel {}", kernel.display()),
            BootFrom::Media(Media::Usb(p)) => write!(f, "the USB image {}", p.display()),
            BootFrom::Media(Media::Cd(p)) => write!(f, "the ISO {} in a CD drive", p.display()),
            BootFrom::Sanboot { .. } => f.write_str("the iSCSI target (iPXE sanboot)"),
        }
    }
}

/// A raw disk image attached as a virtio disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Disk {
    pub path: PathBuf,
    /// Several blades write this image at once (the SAN). Only raw images
    /// can be shared; the guests coordinate (each writes only its own
    /// volumes), as on a real SAN.
    pub shared: bool,
}

/// A second NIC on the storage network (its own `vde_switch`), for a SAN
/// reached over iSCSI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StorageNic {
    /// The storage network's `vde_switch` socket directory.
    pub switch: PathBuf,
    pub mac: MacAddr,
}

/// The UNIX sockets a blade's QEMU connects to; the rig listens on them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Sockets {
    /// ttyS0: firmware, kernel, node agent and init messages.
    pub console: PathBuf,
    /// ttyS1: the root shell the image runs for the rig's checks.
    pub shell: PathBuf,
    /// QMP, to power the blade off.
    pub qmp: PathBuf,
}

impl Sockets {
    /// The sockets of a blade, in `dir` (kept short: socket paths are
    /// limited to 107 bytes).
    pub fn in_dir(dir: &Path) -> Sockets {
        Sockets {
            console: dir.join("ttyS0"),
            shell: dir.join("ttyS1"),
            qmp: dir.join("qmp"),
        }
    }
}

/// Where the UEFI firmware's two flash images come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UefiFiles {
    /// Read-only code, shared by every blade.
    pub code: PathBuf,
    /// The blade's own copy of the variable store.
    pub vars: PathBuf,
}

/// One blade's virtual machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Machine {
    pub name: String,
    pub accel: Accel,
    pub firmware: Firmware,
    /// Present when `firmware` is UEFI.
    pub uefi: Option<UefiFiles>,
    pub memory_mib: u32,
    /// Virtual CPUs (`-smp`): 1 for blades; more where a guest's work
    /// runs on several threads at once (the iSCSI bench's installer).
    pub cpus: u32,
    pub mac: MacAddr,
    /// The `vde_switch` socket directory of the private segment.
    pub switch: PathBuf,
    pub disks: Vec<Disk>,
    /// The storage NIC of a blade that reaches its SAN over iSCSI; it
    /// comes after the cluster NIC on the bus (iPXE's `net1`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage: Option<StorageNic>,
    /// A second storage NIC on a second storage network (iPXE's `net2`):
    /// another path to the target.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage2: Option<StorageNic>,
    pub boot: BootFrom,
    pub sockets: Sockets,
}

impl Machine {
    /// The arguments of `qemu-system-x86_64` (without the program name).
    pub fn argv(&self) -> Vec<String> {
        let mut a: Vec<String> = Vec::new();
        let mut push = |items: &[&str]| a.extend(items.iter().map(|s| s.to_string()));
        push(&["-name", &self.name]);
        // graphics=off makes SeaBIOS print its banner and the iPXE ROM's
        // messages on the first serial port, as a BMC's serial console does.
        let machine = match self.firmware {
            Firmware::Bios => "pc,graphics=off",
            Firmware::Uefi => "q35,graphics=off",
        };
        push(&["-machine", machine, "-accel", &self.accel.to_string()]);
        push(&["-m", &self.memory_mib.to_string()]);
        push(&["-smp", &self.cpus.max(1).to_string()]);
        push(&["-nodefaults", "-no-user-config", "-display", "none"]);
        push(&["-vga", "none"]);
        // A guest that reboots or panics powers off, so the rig sees it
        // instead of a blade looping through its firmware.
        push(&["-no-reboot"]);

        let s = &self.sockets;
        for (id, path) in [("con0", &s.console), ("con1", &s.shell)] {
            push(&[
                "-chardev",
                &format!("socket,id={id},path={}", path.display()),
            ]);
            push(&["-serial", &format!("chardev:{id}")]);
        }
        push(&[
            "-chardev",
            &format!("socket,id=qmp,path={}", s.qmp.display()),
        ]);
        push(&["-mon", "chardev=qmp,mode=control"]);

        if let Some(u) = &self.uefi {
            push(&[
                "-drive",
                &format!(
                    "if=pflash,format=raw,unit=0,readonly=on,file={}",
                    u.code.display()
                ),
            ]);
            push(&[
                "-drive",
                &format!("if=pflash,format=raw,unit=1,file={}", u.vars.display()),
            ]);
        }

        let disk_first = matches!(self.boot, BootFrom::Disk);
        match &self.boot {
            BootFrom::Media(Media::Usb(p)) => {
                push(&[
                    "-drive",
                    &format!(
                        "file={},format=raw,if=none,id=media,readonly=on",
                        p.display()
                    ),
                ]);
                push(&[
                    "-device",
                    "virtio-blk-pci,drive=media,serial=vlx-media,bootindex=0",
                ]);
            }
            BootFrom::Media(Media::Cd(p)) => {
                push(&[
                    "-drive",
                    &format!(
                        "file={},format=raw,if=none,id=media,media=cdrom,readonly=on",
                        p.display()
                    ),
                ]);
                push(&["-device", "ide-cd,drive=media,bootindex=0"]);
            }
            _ => {}
        }
        let media = matches!(self.boot, BootFrom::Media(_));
        for (i, d) in self.disks.iter().enumerate() {
            push(&[
                "-drive",
                &format!(
                    "file={},format=raw,if=none,id=disk{i},cache=writeback",
                    d.path.display()
                ),
            ]);
            let mut dev = format!("virtio-blk-pci,drive=disk{i}");
            if d.shared {
                dev.push_str(",share-rw=on");
            }
            if disk_first && i == 0 {
                dev.push_str(",bootindex=1");
            }
            if media && i == 0 {
                dev.push_str(&format!(",serial={SAN_SERIAL}"));
            }
            push(&["-device", &dev]);
        }

        push(&[
            "-netdev",
            &format!("vde,id=net0,sock={}", self.switch.display()),
        ]);
        let mut nic = format!("virtio-net-pci,netdev=net0,mac={}", self.mac);
        match self.boot {
            BootFrom::Network => nic.push_str(",bootindex=1"),
            // No option ROM: iPXE would otherwise spend seconds probing.
            BootFrom::Disk
            | BootFrom::Kernel { .. }
            | BootFrom::Media(_)
            | BootFrom::Sanboot { .. } => nic.push_str(",romfile="),
        }
        push(&["-device", &nic]);
        if let Some(st) = &self.storage {
            push(&[
                "-netdev",
                &format!("vde,id=net1,sock={}", st.switch.display()),
            ]);
            // No option ROM either: the iPXE that boots the blade brings
            // its own driver.
            push(&[
                "-device",
                &format!("virtio-net-pci,netdev=net1,mac={},romfile=", st.mac),
            ]);
        }
        if let Some(st) = &self.storage2 {
            push(&[
                "-netdev",
                &format!("vde,id=net2,sock={}", st.switch.display()),
            ]);
            push(&[
                "-device",
                &format!("virtio-net-pci,netdev=net2,mac={},romfile=", st.mac),
            ]);
        }
        if let BootFrom::Sanboot { rom, script } = &self.boot {
            push(&["-kernel", &rom.to_string_lossy()]);
            push(&["-append", script]);
        }

        if let BootFrom::Kernel {
            kernel,
            initrd,
            append,
        } = &self.boot
        {
            push(&["-kernel", &kernel.to_string_lossy()]);
            push(&["-initrd", &initrd.to_string_lossy()]);
            push(&["-append", append]);
        }
        a
    }

    /// The command line as one shell-quoted string, for logs and reports.
    pub fn command_line(&self) -> String {
        std::iter::once(QEMU.to_string())
            .chain(self.argv().iter().map(|a| shell_quote(a)))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Quotes `s` for a POSIX shell when it needs it.
pub fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine(boot: BootFrom, firmware: Firmware) -> Machine {
        Machine {
            name: "blade01".into(),
            accel: Accel::Tcg,
            firmware,
            uefi: (firmware == Firmware::Uefi).then(|| UefiFiles {
                code: "/usr/share/OVMF/OVMF_CODE_4M.fd".into(),
                vars: "/r/blade01/vars.fd".into(),
            }),
            memory_mib: 384,
            cpus: 1,
            mac: "52:54:00:77:00:01".parse().unwrap(),
            switch: "/r/switch".into(),
            disks: vec![Disk {
                path: "/r/san.img".into(),
                shared: true,
            }],
            storage: None,
            storage2: None,
            boot,
            sockets: Sockets::in_dir(Path::new("/r/blade01")),
        }
    }

    fn pairs(argv: &[String], flag: &str) -> Vec<String> {
        argv.windows(2)
            .filter(|w| w[0] == flag)
            .map(|w| w[1].clone())
            .collect()
    }

    #[test]
    fn disk_boot_puts_the_shared_san_first_and_drops_the_nic_rom() {
        let argv = machine(BootFrom::Disk, Firmware::Bios).argv();
        assert_eq!(
            pairs(&argv, "-device"),
            [
                "virtio-blk-pci,drive=disk0,share-rw=on,bootindex=1",
                "virtio-net-pci,netdev=net0,mac=52:54:00:77:00:01,romfile=",
            ]
        );
        assert_eq!(pairs(&argv, "-accel"), ["tcg"]);
        assert_eq!(pairs(&argv, "-machine"), ["pc,graphics=off"]);
        assert!(!argv.iter().any(|a| a.contains("pflash")));
        assert!(!argv.contains(&"-kernel".to_string()));
    }

    #[test]
    fn network_boot_gives_the_nic_the_first_boot_index() {
        let argv = machine(BootFrom::Network, Firmware::Uefi).argv();
        let devices = pairs(&argv, "-device");
        assert_eq!(devices[0], "virtio-blk-pci,drive=disk0,share-rw=on");
        assert_eq!(
            devices[1],
            "virtio-net-pci,netdev=net0,mac=52:54:00:77:00:01,bootindex=1"
        );
        let drives = pairs(&argv, "-drive");
        assert_eq!(
            drives[..2],
            [
                "if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd",
                "if=pflash,format=raw,unit=1,file=/r/blade01/vars.fd",
            ]
        );
        assert_eq!(pairs(&argv, "-machine"), ["q35,graphics=off"]);
    }

    #[test]
    fn consoles_and_qmp_connect_to_the_rig_sockets() {
        let argv = machine(BootFrom::Disk, Firmware::Bios).argv();
        assert_eq!(
            pairs(&argv, "-chardev"),
            [
                "socket,id=con0,path=/r/blade01/ttyS0",
                "socket,id=con1,path=/r/blade01/ttyS1",
                "socket,id=qmp,path=/r/blade01/qmp",
            ]
        );
        assert_eq!(pairs(&argv, "-serial"), ["chardev:con0", "chardev:con1"]);
        assert_eq!(pairs(&argv, "-netdev"), ["vde,id=net0,sock=/r/switch"]);
    }

    #[test]
    fn kernel_boot_passes_kernel_initrd_and_command_line() {
        let argv = machine(
            BootFrom::Kernel {
                kernel: "/k/vmlinuz".into(),
                initrd: "/k/initrd.img".into(),
                append: "console=ttyS0 quiet".into(),
            },
            Firmware::Bios,
        )
        .argv();
        assert_eq!(pairs(&argv, "-kernel"), ["/k/vmlinuz"]);
        assert_eq!(pairs(&argv, "-initrd"), ["/k/initrd.img"]);
        assert_eq!(pairs(&argv, "-append"), ["console=ttyS0 quiet"]);
    }

    #[test]
    fn media_boot_first_with_the_san_named_by_its_serial() {
        let argv = machine(
            BootFrom::Media(Media::Usb("/r/m.img".into())),
            Firmware::Uefi,
        )
        .argv();
        let devices = pairs(&argv, "-device");
        assert_eq!(
            devices[..2],
            [
                "virtio-blk-pci,drive=media,serial=vlx-media,bootindex=0",
                "virtio-blk-pci,drive=disk0,share-rw=on,serial=vlx-san",
            ]
        );
        assert!(devices[2].ends_with(",romfile="), "{devices:?}");
        assert!(
            pairs(&argv, "-drive")
                .contains(&"file=/r/m.img,format=raw,if=none,id=media,readonly=on".to_string())
        );
        let argv = machine(
            BootFrom::Media(Media::Cd("/r/m.iso".into())),
            Firmware::Bios,
        )
        .argv();
        assert_eq!(pairs(&argv, "-device")[0], "ide-cd,drive=media,bootindex=0");
        assert!(pairs(&argv, "-drive").contains(
            &"file=/r/m.iso,format=raw,if=none,id=media,media=cdrom,readonly=on".to_string()
        ));
    }

    #[test]
    fn command_line_quotes_what_the_shell_would_split() {
        assert_eq!(shell_quote("console=ttyS0"), "console=ttyS0");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }
}

//! The PXE boot tree every node serves (dnsmasq TFTP and HTTP, from
//! `vlx-meta:/tftp/`), for blades that boot while others are up.
//!
//! | file | for |
//! |---|---|
//! | `boot.ipxe` | iPXE (QEMU's NIC ROMs, or chained from the two below): kernel and initramfs over HTTP from the node that answered DHCP (`${next-server}`), TFTP when HTTP fails |
//! | `undionly.kpxe` | BIOS PXE firmware: chains into iPXE, which then gets `boot.ipxe` |
//! | `snponly.efi` | UEFI x64 PXE firmware: iPXE on the firmware's own network driver (SNP), so it runs on any NIC the firmware drives |
//! | `pxelinux.0`, `ldlinux.c32`, `pxelinux.cfg/default` | BIOS PXE firmware where iPXE cannot run: PXELINUX over TFTP |
//! | `vmlinuz`, `initramfs.img` (the initrds by file name) | the kernel and initramfs |
//!
//! Which file a DHCP server offers to which client is [`DhcpBoot`]. Nothing
//! in the tree is secret: it is served to anyone on the network.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::assets::{AssetError, Assets};
use crate::entry::{self, BootEntry, EntryError, Serial};
use crate::fat::{FatError, Source};
use crate::time::Epoch;

/// The iPXE script's file name.
pub const SCRIPT: &str = "boot.ipxe";
const KERNEL: &str = "vmlinuz";
/// Characters an iPXE script would read as syntax (`${...}`, `||`, `&&`,
/// quotes, escapes, comments) and so cannot pass on a command line as
/// they are.
const IPXE_SPECIAL: &[char] = &['$', '|', '&', '"', '\'', '\\', '#'];

#[derive(Debug, thiserror::Error)]
pub enum PxeError {
    #[error(transparent)]
    Entry(#[from] EntryError),
    #[error(transparent)]
    Asset(#[from] AssetError),
    #[error(transparent)]
    Source(#[from] FatError),
    #[error(
        "the command line of boot entry {id:?} holds {found:?}, which iPXE scripts read as syntax"
    )]
    Cmdline { id: String, found: char },
    #[error("two files of the PXE tree would be named {name:?}; rename one of the initrds")]
    Clash { name: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

/// What the tree boots and how it is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PxeSpec {
    pub entry: BootEntry,
    /// Where pxelinux prints, besides the screen.
    pub serial: Option<Serial>,
    /// The HTTP server's port on every node (the script fetches from
    /// `http://${next-server}:PORT/`).
    pub http_port: u16,
    /// The modification time of every file and folder written.
    pub epoch: Epoch,
    pub assets: Assets,
}

impl PxeSpec {
    /// The tree of a plan: its command line, HTTP on port 80.
    pub fn for_plan(
        plan: &cluster::Plan,
        kernel: impl Into<PathBuf>,
        initrds: Vec<PathBuf>,
        epoch: Epoch,
    ) -> PxeSpec {
        PxeSpec {
            entry: BootEntry::for_plan(plan, kernel, initrds),
            serial: Serial::from_cmdline(&plan.boot.cmdline),
            http_port: 80,
            epoch,
            assets: Assets::default(),
        }
    }
}

/// The files of the tree, by path relative to its top, in the order
/// written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PxeTree {
    pub files: Vec<(String, Source)>,
    epoch: Epoch,
}

/// Lays out the tree. Reads only the sizes of the files it will copy.
pub fn plan(spec: &PxeSpec) -> Result<PxeTree, PxeError> {
    let e = &spec.entry;
    e.check()?;
    if let Some(found) = e.cmdline.chars().find(|c| IPXE_SPECIAL.contains(c)) {
        return Err(PxeError::Cmdline {
            id: e.id.clone(),
            found,
        });
    }
    let a = &spec.assets;
    let mut files: Vec<(String, Source)> = vec![
        ("undionly.kpxe".into(), a.source(&a.undionly)?),
        ("snponly.efi".into(), a.source(&a.snponly)?),
        ("pxelinux.0".into(), a.source(&a.pxelinux)?),
        ("ldlinux.c32".into(), a.source(&a.ldlinux_c32)?),
        (KERNEL.into(), Source::file(&e.kernel)?),
    ];
    let mut initrd_names = Vec::new();
    for i in &e.initrds {
        let name = i
            .file_name()
            .map_or_else(|| "initrd".into(), |n| n.to_string_lossy().into_owned());
        initrd_names.push(name.clone());
        files.push((name, Source::file(i)?));
    }
    let names = |p: &Path| -> String {
        if *p == e.kernel {
            return KERNEL.into();
        }
        e.initrds
            .iter()
            .position(|i| i == p)
            .map_or_else(String::new, |n| initrd_names[n].clone())
    };
    let cfg = entry::syslinux_cfg(std::slice::from_ref(e), spec.serial, 1, &names);
    files.push((
        "pxelinux.cfg/default".into(),
        Source::Bytes(cfg.into_bytes()),
    ));
    files.push((
        SCRIPT.into(),
        Source::Bytes(ipxe_script(e, &initrd_names, spec.http_port).into_bytes()),
    ));
    let mut seen: Vec<&str> = Vec::new();
    for (name, _) in &files {
        if seen.contains(&name.as_str()) {
            return Err(PxeError::Clash { name: name.clone() });
        }
        seen.push(name);
    }
    Ok(PxeTree {
        files,
        epoch: spec.epoch,
    })
}

/// The script: HTTP first (several times faster than TFTP for a large
/// initramfs), TFTP from the same node when HTTP fails, and back to the
/// firmware (which tries its next boot device) when both fail. Under UEFI
/// the kernel's EFI stub finds each initrd by an `initrd=<name>` argument;
/// under BIOS the argument is ignored.
fn ipxe_script(e: &BootEntry, initrds: &[String], http_port: u16) -> String {
    let args: String = initrds.iter().map(|n| format!("initrd={n} ")).collect();
    let fetch = |base: &str, fail: &str| {
        let mut s = format!(
            "kernel {base}/{KERNEL} {args}{} || goto {fail}\n",
            e.cmdline
        );
        for n in initrds {
            s += &format!("initrd {base}/{n} || goto {fail}\n");
        }
        s += &format!("boot || goto {fail}\n");
        s
    };
    format!(
        "#!ipxe\n\
         # vlx: {title}; written by the installer, do not edit.\n\
         # Served by every node; fetches from the node that answered DHCP.\n\
         \n\
         {http}\
         \n\
         :tftp\n\
         imgfree\n\
         {tftp}\
         \n\
         :fail\n\
         echo vlx: network boot failed over HTTP and TFTP from ${{next-server}}\n\
         exit 1\n",
        title = e.title,
        http = fetch(&format!("http://${{next-server}}:{http_port}"), "tftp"),
        tftp = fetch("tftp://${next-server}", "fail"),
    )
}

impl PxeTree {
    /// Writes the tree under `dir` (made if missing), every file and
    /// folder stamped with the epoch, files 0644, folders 0755.
    pub fn write(&self, dir: &Path) -> Result<(), PxeError> {
        let io = |what: String| move |source| PxeError::Io { what, source };
        let time = SystemTime::UNIX_EPOCH + Duration::from_secs(self.epoch.0);
        fs::create_dir_all(dir).map_err(io(format!("making {}", dir.display())))?;
        let mut dirs = vec![dir.to_owned()];
        for (name, src) in &self.files {
            let path = dir.join(name);
            if let Some(parent) = path.parent().filter(|p| !dirs.iter().any(|d| d == p)) {
                fs::create_dir_all(parent).map_err(io(format!("making {}", parent.display())))?;
                dirs.push(parent.to_owned());
            }
            let mut f = File::create(&path).map_err(io(format!("writing {}", path.display())))?;
            match src {
                Source::Bytes(b) => f
                    .write_all(b)
                    .map_err(io(format!("writing {}", path.display())))?,
                Source::File { path: from, len } => {
                    let mut r =
                        File::open(from).map_err(io(format!("reading {}", from.display())))?;
                    let n = std::io::copy(&mut r, &mut f).map_err(io(format!(
                        "copying {} to {}",
                        from.display(),
                        path.display()
                    )))?;
                    if n != *len {
                        return Err(PxeError::Source(FatError::Changed {
                            path: from.clone(),
                            expected: *len,
                            found: n,
                        }));
                    }
                }
            }
            f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))
                .map_err(io(format!("setting the mode of {}", path.display())))?;
            f.set_modified(time)
                .map_err(io(format!("setting the time of {}", path.display())))?;
            f.sync_all()
                .map_err(io(format!("syncing {}", path.display())))?;
        }
        // Folders last: writing into them moved their times.
        for d in dirs.iter().rev() {
            let f = File::open(d).map_err(io(format!("opening {}", d.display())))?;
            f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o755))
                .map_err(io(format!("setting the mode of {}", d.display())))?;
            f.set_modified(time)
                .map_err(io(format!("setting the time of {}", d.display())))?;
        }
        Ok(())
    }
}

/// The boot file a DHCP server offers, by client (the per-node dnsmasq
/// configuration points at these):
///
/// | client | how DHCP tells | file |
/// |---|---|---|
/// | iPXE (any platform) | option 175 present, or user class (77) `iPXE` | [`SCRIPT`] (`boot.ipxe`) |
/// | UEFI x64 PXE | client architecture (option 93) 7 or 9 | `snponly.efi` |
/// | BIOS PXE | client architecture 0 (or none) | `undionly.kpxe` |
///
/// `pxelinux.0` is the BIOS alternative for PXE stacks iPXE cannot run on.
/// Every file is fetched by TFTP from the DHCP server's own address
/// (`next-server`), which dnsmasq sets to itself when it serves TFTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DhcpBoot {
    pub ipxe: &'static str,
    pub uefi_x64: &'static str,
    pub bios: &'static str,
    pub bios_pxelinux: &'static str,
}

/// The boot files of the tree [`plan`] lays out.
pub const DHCP_BOOT: DhcpBoot = DhcpBoot {
    ipxe: SCRIPT,
    uefi_x64: "snponly.efi",
    bios: "undionly.kpxe",
    bios_pxelinux: "pxelinux.0",
};

impl DhcpBoot {
    /// dnsmasq configuration lines that offer these files (tags `ipxe` and
    /// `efi-x64`); `dnsmasq --test` accepts them.
    pub fn dnsmasq(&self) -> String {
        format!(
            "# vlx PXE: iPXE gets the script, UEFI x64 and BIOS PXE get iPXE first\n\
             dhcp-userclass=set:ipxe,iPXE\n\
             dhcp-match=set:ipxe,175\n\
             dhcp-match=set:efi-x64,option:client-arch,7\n\
             dhcp-match=set:efi-x64,option:client-arch,9\n\
             dhcp-boot=tag:ipxe,{}\n\
             dhcp-boot=tag:!ipxe,tag:efi-x64,{}\n\
             dhcp-boot=tag:!ipxe,tag:!efi-x64,{}\n",
            self.ipxe, self.uefi_x64, self.bios
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(cmdline: &str) -> BootEntry {
        BootEntry {
            id: "vlx".into(),
            title: "vlx cluster demo".into(),
            kernel: "/k/vmlinuz-6.1".into(),
            initrds: vec!["/k/initramfs.img".into(), "/k/extra.cpio".into()],
            cmdline: cmdline.into(),
        }
    }

    #[test]
    fn script_fetches_over_http_then_tftp() {
        let s = ipxe_script(
            &entry("vlx.san=disk console=ttyS0,115200"),
            &["initramfs.img".into(), "extra.cpio".into()],
            8080,
        );
        assert!(s.starts_with("#!ipxe\n"));
        let http = "kernel http://${next-server}:8080/vmlinuz initrd=initramfs.img initrd=extra.cpio vlx.san=disk console=ttyS0,115200 || goto tftp\n";
        assert!(s.contains(http), "{s}");
        assert!(
            s.contains("initrd tftp://${next-server}/extra.cpio || goto fail\n"),
            "{s}"
        );
        assert!(s.find(":tftp").unwrap() > s.find(http).unwrap());
    }

    #[test]
    fn refuses_command_lines_ipxe_would_expand() {
        let spec = PxeSpec {
            entry: entry("a=${b}"),
            serial: None,
            http_port: 80,
            epoch: Epoch(0),
            assets: Assets::default(),
        };
        assert!(matches!(
            plan(&spec),
            Err(PxeError::Cmdline { found: '$', .. })
        ));
    }
}

//! The boot loaders vlx ships, as Debian packages install them. Each path
//! names its package, so that a missing file says what to install
//! (xtask/src/deps.rs installs them all).

use std::path::PathBuf;

use crate::fat::Source;

/// Where each loader is on the build machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assets {
    /// systemd-boot, the UEFI loader on the ESP (systemd-boot-efi).
    pub systemd_boot: PathBuf,
    /// The syslinux installer for FAT, mtools flavour (syslinux).
    pub syslinux: PathBuf,
    /// MBR boot code that boots the GPT partition marked legacy BIOS
    /// bootable (syslinux-common).
    pub gptmbr: PathBuf,
    /// PXELINUX and the core module it loads (pxelinux, syslinux-common).
    pub pxelinux: PathBuf,
    pub ldlinux_c32: PathBuf,
    /// iPXE for BIOS PXE stacks, using their UNDI driver (ipxe).
    pub undionly: PathBuf,
    /// iPXE for UEFI, using the firmware's network driver (SNP) (ipxe).
    pub snponly: PathBuf,
}

impl Default for Assets {
    fn default() -> Assets {
        Assets {
            systemd_boot: "/usr/lib/systemd/boot/efi/systemd-bootx64.efi".into(),
            syslinux: "/usr/bin/syslinux".into(),
            gptmbr: "/usr/lib/SYSLINUX/gptmbr.bin".into(),
            pxelinux: "/usr/lib/PXELINUX/pxelinux.0".into(),
            ldlinux_c32: "/usr/lib/syslinux/modules/bios/ldlinux.c32".into(),
            undionly: "/usr/lib/ipxe/undionly.kpxe".into(),
            snponly: "/usr/lib/ipxe/snponly.efi".into(),
        }
    }
}

/// A loader that is not where its package puts it.
#[derive(Debug, thiserror::Error)]
#[error("{path} is missing (Debian package {package}): {source}")]
pub struct AssetError {
    pub path: PathBuf,
    pub package: &'static str,
    #[source]
    pub source: std::io::Error,
}

/// The Debian package that installs each asset, for error messages.
pub(crate) fn package_of(path: &std::path::Path, assets: &Assets) -> &'static str {
    let table: [(&PathBuf, &'static str); 7] = [
        (&assets.systemd_boot, "systemd-boot-efi"),
        (&assets.syslinux, "syslinux"),
        (&assets.gptmbr, "syslinux-common"),
        (&assets.pxelinux, "pxelinux"),
        (&assets.ldlinux_c32, "syslinux-common"),
        (&assets.undionly, "ipxe"),
        (&assets.snponly, "ipxe"),
    ];
    table
        .iter()
        .find(|(p, _)| p.as_path() == path)
        .map_or("?", |(_, pkg)| pkg)
}

impl Assets {
    /// One asset as a file source, or an error naming its package.
    pub fn source(&self, path: &std::path::Path) -> Result<Source, AssetError> {
        let missing = |source| AssetError {
            path: path.to_owned(),
            package: package_of(path, self),
            source,
        };
        let meta = std::fs::metadata(path).map_err(missing)?;
        if !meta.is_file() {
            return Err(missing(std::io::Error::other("not a regular file")));
        }
        Ok(Source::File {
            path: path.to_owned(),
            len: meta.len(),
        })
    }
}

//! What a boot entry boots, and the serial console loaders talk on.

use std::path::PathBuf;

/// One thing to boot: a kernel, its initramfs images (loaded one after the
/// other, so their contents overlay) and its command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootEntry {
    /// Short name: the syslinux label, the systemd-boot entry file, the
    /// folder of the entry's files. `a-z`, `0-9`, `-`, `_`; at most 32.
    pub id: String,
    /// What a boot menu shows.
    pub title: String,
    pub kernel: PathBuf,
    pub initrds: Vec<PathBuf>,
    pub cmdline: String,
}

/// Why an entry cannot be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("boot entry {id:?}: {reason}")]
pub struct EntryError {
    pub id: String,
    pub reason: &'static str,
}

impl BootEntry {
    /// The entry for a plan's one command line.
    pub fn for_plan(
        plan: &cluster::Plan,
        kernel: impl Into<PathBuf>,
        initrds: Vec<PathBuf>,
    ) -> BootEntry {
        BootEntry {
            id: "vlx".into(),
            title: format!("vlx cluster {}", plan.cluster.name),
            kernel: kernel.into(),
            initrds,
            cmdline: plan.boot.cmdline.clone(),
        }
    }

    pub(crate) fn check(&self) -> Result<(), EntryError> {
        let bad = |reason| EntryError {
            id: self.id.clone(),
            reason,
        };
        if self.id.is_empty()
            || self.id.len() > 32
            || !self
                .id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        {
            return Err(bad("the id has 1 to 32 of a-z, 0-9, '-', '_'"));
        }
        if [&self.title, &self.cmdline]
            .iter()
            .any(|s| s.chars().any(char::is_control))
        {
            return Err(bad("title and command line are one line each"));
        }
        Ok(())
    }
}

/// A serial console for the boot loaders (the kernel has its own
/// `console=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Serial {
    /// 0 for ttyS0 (COM1).
    pub port: u8,
    pub baud: u32,
}

impl Serial {
    /// The first `console=ttySN[,baud...]` of a kernel command line; the
    /// kernel's default speed is 9600.
    pub fn from_cmdline(cmdline: &str) -> Option<Serial> {
        cmdline.split_whitespace().find_map(|w| {
            let spec = w.strip_prefix("console=ttyS")?;
            let (port, rest) = spec.split_once(',').unwrap_or((spec, ""));
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            Some(Serial {
                port: port.parse().ok()?,
                baud: if digits.is_empty() {
                    9600
                } else {
                    digits.parse().ok()?
                },
            })
        })
    }
}

/// The `SERIAL`, `DEFAULT`, prompt and `LABEL` lines of a syslinux or
/// pxelinux configuration; `path` maps a host file to its path as the
/// loader sees it.
pub fn syslinux_cfg(
    entries: &[BootEntry],
    serial: Option<Serial>,
    timeout_secs: u32,
    path: &dyn Fn(&std::path::Path) -> String,
) -> String {
    let mut s = String::from("# vlx boot entries; written by the installer, do not edit\n");
    if let Some(c) = serial {
        // Must come first, so that everything after goes to the port too.
        s += &format!("SERIAL {} {}\n", c.port, c.baud);
    }
    if let Some(first) = entries.first() {
        s += &format!("DEFAULT {}\n", first.id);
    }
    // One entry boots at once; with more, the boot: prompt waits the
    // timeout for a label (in tenths of a second).
    if entries.len() > 1 {
        s += &format!("PROMPT 1\nTIMEOUT {}\n", timeout_secs * 10);
        for e in entries {
            s += &format!("SAY {}: {}\n", e.id, e.title);
        }
    } else {
        s += "PROMPT 0\n";
    }
    for e in entries {
        s += &format!("\nLABEL {}\n  LINUX {}\n", e.id, path(&e.kernel));
        if !e.initrds.is_empty() {
            let list: Vec<String> = e.initrds.iter().map(|p| path(p)).collect();
            s += &format!("  INITRD {}\n", list.join(","));
        }
        s += &format!("  APPEND {}\n", e.cmdline);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_from_the_command_line() {
        let s = |c| Serial::from_cmdline(c);
        assert_eq!(
            s("vlx.san=disk console=tty0 console=ttyS1,115200n8"),
            Some(Serial {
                port: 1,
                baud: 115_200
            })
        );
        assert_eq!(
            s("console=ttyS0"),
            Some(Serial {
                port: 0,
                baud: 9600
            })
        );
        assert_eq!(s("console=tty0 quiet"), None);
    }

    #[test]
    fn checks_ids() {
        let mut e = BootEntry {
            id: "vlx".into(),
            title: "t".into(),
            kernel: "/k".into(),
            initrds: vec![],
            cmdline: "a=b".into(),
        };
        assert!(e.check().is_ok());
        e.id = "Vlx".into();
        assert!(e.check().is_err());
        e.id = "vlx".into();
        e.cmdline = "a\nb".into();
        assert!(e.check().is_err());
    }
}

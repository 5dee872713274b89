//! Thin, safe wrappers over the system calls the agent makes.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

fn cstr(s: &[u8]) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a path"))
}

/// `mount(2)`; `fstype` and `data` may be empty.
pub fn mount(
    source: &str,
    target: &Path,
    fstype: &str,
    flags: libc::c_ulong,
    data: &str,
) -> io::Result<()> {
    let source = cstr(source.as_bytes())?;
    let target = cstr(target.as_os_str().as_bytes())?;
    let fstype = cstr(fstype.as_bytes())?;
    let data = cstr(data.as_bytes())?;
    let opt = |c: &CString| {
        if c.as_bytes().is_empty() {
            std::ptr::null()
        } else {
            c.as_ptr()
        }
    };
    // SAFETY: every pointer is a NUL-terminated string that outlives the call, or null.
    let rc = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            opt(&fstype),
            flags,
            opt(&data).cast(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Moves the mount at `from` to `to`.
pub fn move_mount(from: &Path, to: &Path) -> io::Result<()> {
    mount(&from.to_string_lossy(), to, "", libc::MS_MOVE, "")
}

/// Whether a mount is busy at `path` already (it is a mount point).
pub fn is_mount_point(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let (Ok(here), Ok(up)) = (std::fs::metadata(path), std::fs::metadata(path.join(".."))) else {
        return false;
    };
    here.dev() != up.dev() || here.ino() == up.ino()
}

/// Flag of `finit_module(2)`: the kernel decompresses the file itself
/// (`.ko.xz`, `.ko.zst`, `.ko.gz`; needs CONFIG_MODULE_DECOMPRESS).
const MODULE_INIT_COMPRESSED_FILE: libc::c_uint = 4;

/// What loading one module did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loaded {
    Now,
    Already,
}

/// Loads the kernel module in `file` with `finit_module(2)`. A module that
/// is loaded already (EEXIST) is not an error.
pub fn load_module(file: &File, compressed: bool) -> io::Result<Loaded> {
    let params = c"";
    let flags = if compressed {
        MODULE_INIT_COMPRESSED_FILE
    } else {
        0
    };
    // SAFETY: the descriptor is open for the duration of the call and the
    // parameter string is NUL-terminated.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_finit_module,
            file.as_raw_fd(),
            params.as_ptr(),
            flags,
        )
    };
    if rc == 0 {
        return Ok(Loaded::Now);
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EEXIST) => Ok(Loaded::Already),
        _ => Err(e),
    }
}

/// The running kernel's release, as `uname -r` prints it.
pub fn kernel_release() -> io::Result<String> {
    // SAFETY: utsname is plain old data; uname fills it.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is a valid, writable utsname.
    if unsafe { libc::uname(&mut u) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let bytes: Vec<u8> = u
        .release
        .iter()
        .take_while(|c| **c != 0)
        .map(|c| *c as u8)
        .collect();
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Makes sure standard input, output and error are open: the kernel opens
/// `/dev/console` for `/init` only when the initramfs has that node.
pub fn ensure_console() {
    // SAFETY: F_GETFD only inspects the descriptor table.
    if unsafe { libc::fcntl(1, libc::F_GETFD) } != -1 {
        return;
    }
    let Ok(console) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/console")
    else {
        return;
    };
    for fd in 0..3 {
        // SAFETY: both descriptors are valid; dup2 replaces `fd`.
        unsafe { libc::dup2(console.as_raw_fd(), fd) };
    }
}

/// This process's id; the agent only acts as process 1.
pub fn pid() -> u32 {
    std::process::id()
}

/// The first IPv4 address and netmask of interface `name`.
pub fn ipv4_of(name: &str) -> Option<(std::net::Ipv4Addr, std::net::Ipv4Addr)> {
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list`, freed below with freeifaddrs.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return None;
    }
    let mut found = None;
    let mut cur = list;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        if ifa.ifa_addr.is_null() || ifa.ifa_netmask.is_null() || ifa.ifa_name.is_null() {
            continue;
        }
        // SAFETY: ifa_name is a NUL-terminated string owned by the list.
        let ifname = unsafe { std::ffi::CStr::from_ptr(ifa.ifa_name) };
        // SAFETY: ifa_addr points to a sockaddr of at least sa_family.
        let family = unsafe { (*ifa.ifa_addr).sa_family };
        if ifname.to_bytes() != name.as_bytes() || i32::from(family) != libc::AF_INET {
            continue;
        }
        // SAFETY: for AF_INET both point to sockaddr_in.
        let (addr, mask) = unsafe {
            (
                *(ifa.ifa_addr as *const libc::sockaddr_in),
                *(ifa.ifa_netmask as *const libc::sockaddr_in),
            )
        };
        found = Some((
            std::net::Ipv4Addr::from(u32::from_be(addr.sin_addr.s_addr)),
            std::net::Ipv4Addr::from(u32::from_be(mask.sin_addr.s_addr)),
        ));
        break;
    }
    // SAFETY: `list` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(list) };
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn reads_the_loopback_address() {
        assert_eq!(
            ipv4_of("lo"),
            Some((Ipv4Addr::new(127, 0, 0, 1), Ipv4Addr::new(255, 0, 0, 0)))
        );
        assert_eq!(ipv4_of("no-such-interface"), None);
    }

    #[test]
    fn knows_the_running_kernel() {
        let release = kernel_release().unwrap();
        let proc = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
        assert_eq!(release, proc.trim());
    }
}

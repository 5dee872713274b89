//! The Debian images through mmdebstrap (slow: minutes). They need the
//! archive the build machine's apt sources name (or a local mirror there):
//! when it cannot be reached they fail and say which source.

// Helpers outside #[test] functions panic on purpose too.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::{TcpStream, ToSocketAddrs};
use std::process::Command;
use std::time::Duration;

use common::*;
use contracts::guest::GuestMeta;
use contracts::image as manifest;
use imagebuilder::image::sbom;

/// Checks that every apt source a build of `profile` uses answers (a TCP
/// connection to an http(s) archive's port, an existing folder for a
/// `file:` one); panics naming the first that does not.
fn require_sources(profile: &str) {
    use imagebuilder::profile::{GuestProfile, HostProfile, RootSource};
    let path = workspace().join(profile);
    let rootfs = match HostProfile::load(&path) {
        Ok(h) => h.rootfs,
        Err(_) => GuestProfile::load(&path).unwrap().rootfs,
    };
    let RootSource::Mmdebstrap(spec) = &rootfs else {
        panic!("{profile} is not an mmdebstrap profile");
    };
    for line in imagebuilder::image::sources::for_build(spec).unwrap() {
        let uri = line.uri.as_str();
        if let Some(path) = uri
            .strip_prefix("file://")
            .or_else(|| uri.strip_prefix("copy://"))
        {
            assert!(
                std::path::Path::new(path).is_dir(),
                "the configured apt source {line} is not a folder on this machine"
            );
            continue;
        }
        let (scheme, rest) = uri.split_once("://").unwrap_or(("http", uri));
        let authority = rest.split('/').next().unwrap_or_default();
        let authority = authority.rsplit('@').next().unwrap_or_default();
        let default_port = if scheme == "https" { 443 } else { 80 };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => {
                (h.to_owned(), p.parse().unwrap_or(default_port))
            }
            _ => (authority.to_owned(), default_port),
        };
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let reachable = (host.as_str(), port).to_socket_addrs().is_ok_and(|addrs| {
            addrs
                .into_iter()
                .any(|a| TcpStream::connect_timeout(&a, Duration::from_secs(10)).is_ok())
        });
        assert!(
            reachable,
            "the configured apt source {line} cannot be reached ({host}:{port}); \
             these tests build from the build machine's apt sources or the profile's mirror"
        );
    }
}

/// The Debian host has no password-less login: `passwd -S -a` (shadow's
/// own tool, in a copy of the root's /etc) says every account is locked
/// (`L`; none without a password, `NP`), and neither sshd's configuration
/// nor a getty of the root allows an empty password or logs in alone.
fn no_password_less_login(origin: &std::path::Path, dir: &std::path::Path) {
    let root = dir.join("etc-of-root");
    std::fs::create_dir_all(&root).unwrap();
    run(Command::new("debugfs")
        .arg("-R")
        .arg(format!("rdump /etc {}", root.display()))
        .arg(origin));
    assert!(
        root.join("etc/shadow").is_file(),
        "no /etc/shadow in the root"
    );
    let status = run(Command::new("passwd")
        .arg("-R")
        .arg(&root)
        .args(["-S", "-a"]));
    let accounts: Vec<(&str, &str)> = status
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            Some((w.next()?, w.next()?))
        })
        .collect();
    assert!(
        accounts.contains(&("root", "L")),
        "root is not locked:\n{status}"
    );
    for (user, state) in &accounts {
        assert_eq!(
            *state, "L",
            "account {user} can log in by password (or without one):\n{status}"
        );
    }
    let mut configs = vec![root.join("etc/ssh/sshd_config")];
    let drop_ins = root.join("etc/ssh/sshd_config.d");
    if let Ok(rd) = std::fs::read_dir(&drop_ins) {
        configs.extend(rd.map(|e| e.unwrap().path()));
    }
    for c in &configs {
        let text = std::fs::read_to_string(c).unwrap();
        for line in text.lines() {
            let words: Vec<String> = line
                .split_whitespace()
                .map(str::to_ascii_lowercase)
                .collect();
            assert!(
                !(words.first().is_some_and(|w| w == "permitemptypasswords")
                    && words.get(1).is_some_and(|w| w == "yes")),
                "{}: {line}",
                c.display()
            );
        }
    }
    // systemd's units and drop-ins (a getty with --autologin).
    let mut todo = vec![root.join("etc/systemd")];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            if m.is_dir() {
                todo.push(p);
            } else if m.is_file() {
                let text = String::from_utf8_lossy(&std::fs::read(&p).unwrap()).into_owned();
                assert!(
                    !text.contains("autologin"),
                    "{} logs in on its own",
                    p.display()
                );
            }
        }
    }
}

fn vlx_image(args: &[&str], profile: &str, out: &std::path::Path) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vlx-image"));
    cmd.args(args)
        .arg("--profile")
        .arg(workspace().join(profile))
        .arg("--out")
        .arg(out)
        .env("SOURCE_DATE_EPOCH", EPOCH.to_string());
    run(&mut cmd);
}

#[test]
fn debian_bookworm_host_and_guest_through_mmdebstrap() {
    require_sources("profiles/hosts/debian-bookworm.toml");
    require_sources("profiles/guests/debian-bookworm.toml");
    let d = tempfile::tempdir().unwrap();

    let host = d.path().join("host");
    let agent = agent();
    vlx_image(
        &["build", "--agent", agent.to_str().unwrap()],
        "profiles/hosts/debian-bookworm.toml",
        &host,
    );
    let m = manifest::verify_dir(&host).unwrap();
    assert!(
        m.kernel_release.ends_with("-cloud-amd64"),
        "{}",
        m.kernel_release
    );
    let origin = host.join("origin.ext4");
    run(Command::new("e2fsck").arg("-fn").arg(&origin));
    no_password_less_login(&origin, d.path());

    // The SBOM lists every package dpkg-query shows in the root, at its
    // version; so does the manifest.
    let doc = spdx::check(&std::fs::read_to_string(host.join(sbom::FILE)).unwrap());
    let admin = d.path().join("dpkg");
    run(Command::new("debugfs")
        .arg("-R")
        .arg(format!("rdump /var/lib/dpkg {}", d.path().display()))
        .arg(&origin));
    let listed = run(Command::new("dpkg-query")
        .arg(format!("--admindir={}", admin.display()))
        .args(["-W", "-f", "${Package}\t${Version}\n"]));
    let in_sbom: std::collections::BTreeSet<(String, String)> = doc["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_owned(),
                p["versionInfo"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(listed.lines().count() > 100, "{listed}");
    for line in listed.lines() {
        let (name, version) = line.split_once('\t').unwrap();
        assert!(
            in_sbom.contains(&(name.to_owned(), version.to_owned())),
            "{name} {version} is in the root but not in the SBOM"
        );
        assert_eq!(
            m.packages.get(name).map(String::as_str),
            Some(version),
            "{name}"
        );
    }
    // The kernel is the newest the configured sources offer (their
    // -security and -updates suites included): the version apt on the
    // build machine, which reads the same sources, takes as candidate.
    let (real, newest) =
        imagebuilder::image::kernel::resolve_package("linux-image-cloud-amd64").unwrap();
    assert_eq!(real, format!("linux-image-{}", m.kernel_release));
    assert_eq!(
        m.packages.get(&real),
        Some(&newest),
        "the image's kernel is not the newest of the configured sources"
    );
    for path in [
        "/usr/sbin/sshd",
        "/usr/sbin/dnsmasq",
        "/usr/sbin/chronyd",
        "/usr/sbin/keepalived",
        "/sbin/init",
        // etcd on the voters, QEMU (and its firmware) for VMs, the NFS
        // client of the shared volume.
        "/usr/bin/etcd",
        "/usr/bin/etcdctl",
        "/usr/bin/qemu-system-x86_64",
        "/usr/share/seabios/bios-256k.bin",
        "/usr/sbin/mount.nfs",
    ] {
        let s = run(Command::new("debugfs")
            .arg("-R")
            .arg(format!("stat {path}"))
            .arg(&origin));
        assert!(
            s.contains("Inode:"),
            "{path} is not in the Debian root: {s}"
        );
    }
    units_verify_in_the_root(&origin, d.path());
    let list = run(Command::new("sh").arg("-c").arg(format!(
        "gzip -dc {} | cpio -t --quiet",
        host.join("initramfs.img").display()
    )));
    assert!(
        list.lines().any(|l| l == "init") && list.contains("dm-snapshot.ko"),
        "{list}"
    );

    let guest = d.path().join("guest");
    vlx_image(&["guest"], "profiles/guests/debian-bookworm.toml", &guest);
    let meta = GuestMeta::read(&guest.join("guest.toml")).unwrap();
    let tarball = guest.join(&meta.tarball);
    let sum = run(Command::new("sha256sum").arg(&tarball));
    assert_eq!(
        sum.split_whitespace().next(),
        Some(meta.tarball_sha256.as_str())
    );
    let list = run(Command::new("tar").arg("-tvzf").arg(&tarball));
    assert!(
        list.contains(&meta.kernel),
        "{} not in the tarball",
        meta.kernel
    );
    let initrd = meta.initramfs.as_deref().unwrap();
    assert!(list.contains(initrd), "{initrd} not in the tarball");
    assert!(
        list.lines()
            .any(|l| l.starts_with('l') && l.contains("sbin/init -> ")),
        "no /sbin/init link"
    );
}

#[test]
fn debian_kernel_fetch_fills_an_empty_cache() {
    // apt-get download asks the build machine's sources, as the image
    // builds do.
    require_sources("profiles/hosts/debian-bookworm.toml");
    let cache = tempfile::tempdir().unwrap();
    // Two builds fetch at once (as parallel tests do): both succeed.
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| {
            imagebuilder::image::kernel::fetch_into(cache.path(), "linux-image-cloud-amd64")
        });
        let b = s.spawn(|| {
            imagebuilder::image::kernel::fetch_into(cache.path(), "linux-image-cloud-amd64")
        });
        (a.join().unwrap(), b.join().unwrap())
    });
    let k = a.unwrap();
    assert_eq!(b.unwrap(), k);
    assert!(
        k.vmlinuz.starts_with(cache.path().join("kernels")),
        "{}",
        k.vmlinuz.display()
    );
    assert!(k.modules.join("modules.dep").is_file());
    // depmod ran: the binary index exists too.
    assert!(k.modules.join("modules.dep.bin").is_file());
    let (real, version) =
        imagebuilder::image::kernel::resolve_package("linux-image-cloud-amd64").unwrap();
    let dir = cache
        .path()
        .join("kernels")
        .join(format!("{real}_{}", version.replace(':', "%3a")));
    assert!(k.vmlinuz.starts_with(&dir));
    // Only the finished folder is left, no .deb and no temporary folder.
    assert_eq!(
        names(&cache.path().join("kernels")),
        [format!("{real}_{}", version.replace(':', "%3a"))]
    );
    // A second fetch uses the cache (same answer, nothing new).
    assert_eq!(
        imagebuilder::image::kernel::fetch_into(cache.path(), "linux-image-cloud-amd64").unwrap(),
        k
    );
}

#[test]
fn debian_missing_package_is_named() {
    require_sources("profiles/hosts/debian-bookworm.toml");
    let d = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(workspace().join("profiles/hosts/debian-bookworm.toml"))
        .unwrap()
        .replace(
            "packages = [\n",
            "packages = [\n    \"no-such-package-vlx\",\n",
        )
        // The copy lives elsewhere: its overlay by its full path.
        .replace(
            "\"../../overlays/debian\"",
            &format!("{:?}", workspace().join("overlays/debian")),
        );
    let profile = d.path().join("p.toml");
    std::fs::write(&profile, text).unwrap();
    let out = d.path().join("out");
    let o = Command::new(env!("CARGO_BIN_EXE_vlx-image"))
        .args(["build", "--agent", agent().to_str().unwrap(), "--profile"])
        .arg(&profile)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("no-such-package-vlx"), "{err}");
    assert_eq!(names(&out), Vec::<String>::new());
}

/// A build with no network at all (a fresh network namespace) from a file
/// mirror named by the profile's `rootfs.mirror`: the mirror is made with
/// apt-ftparchive from the package cache the Debian builds fill
/// (`$VLX_CACHE/debs/bookworm`), and the build gets an empty cache of its
/// own (apt reads a file: mirror in place), so every package comes from
/// the mirror.
#[test]
fn debian_host_builds_offline_from_a_file_mirror() {
    let debs = imagebuilder::image::kernel::cache_root().join("debs/bookworm");
    let have = std::fs::read_dir(&debs)
        .map(|r| {
            r.filter_map(|e| e.ok())
                .filter(|e| e.path().extension().is_some_and(|x| x == "deb"))
                .count()
        })
        .unwrap_or(0);
    assert!(
        have > 100,
        "{} holds {have} packages: a Debian host build (debian_bookworm_host_and_guest_through_mmdebstrap, \
         or vlx-image build --profile profiles/hosts/debian-bookworm.toml) fills it first",
        debs.display()
    );
    let d = tempfile::tempdir().unwrap();
    let mirror = d.path().join("mirror");
    let pool = mirror.join("pool/main");
    let index = mirror.join("dists/bookworm/main/binary-amd64");
    std::fs::create_dir_all(&pool).unwrap();
    std::fs::create_dir_all(&index).unwrap();
    run(Command::new("sh").arg("-c").arg(format!(
        "cp -a {}/*.deb {}",
        debs.display(),
        pool.display()
    )));
    let packages = run(Command::new("apt-ftparchive")
        .args(["packages", "pool"])
        .current_dir(&mirror));
    std::fs::write(index.join("Packages"), packages).unwrap();
    let release = run(Command::new("apt-ftparchive")
        .args([
            "-o",
            "APT::FTPArchive::Release::Suite=bookworm",
            "-o",
            "APT::FTPArchive::Release::Codename=bookworm",
            "-o",
            "APT::FTPArchive::Release::Components=main",
            "-o",
            "APT::FTPArchive::Release::Architectures=amd64",
            "release",
            "dists/bookworm",
        ])
        .current_dir(&mirror));
    std::fs::write(mirror.join("dists/bookworm/Release"), release).unwrap();

    let text = std::fs::read_to_string(workspace().join("profiles/hosts/debian-bookworm.toml"))
        .unwrap()
        .replace(
            "suite = \"bookworm\"\n",
            &format!(
                "suite = \"bookworm\"\nmirror = \"file://{}\"\n",
                mirror.display()
            ),
        )
        .replace(
            "overlays = [\"../../overlays/debian\"]",
            &format!(
                "overlays = [{:?}]",
                workspace().join("overlays/debian").display().to_string()
            ),
        );
    let profile = d.path().join("offline.toml");
    std::fs::write(&profile, text).unwrap();
    let out = d.path().join("out");
    let cache = d.path().join("cache");
    run(Command::new("unshare")
        .arg("--net")
        .arg(env!("CARGO_BIN_EXE_vlx-image"))
        .args(["build", "--agent", agent().to_str().unwrap(), "--profile"])
        .arg(&profile)
        .arg("--out")
        .arg(&out)
        .env("VLX_CACHE", &cache)
        .env("SOURCE_DATE_EPOCH", EPOCH.to_string()));
    let m = manifest::verify_dir(&out).unwrap();
    assert!(
        m.packages.contains_key("openssh-server") && m.packages.contains_key("keepalived"),
        "{:?}",
        m.packages
    );
    // The root's apt sources are the mirror alone: with no network in the
    // namespace, nothing else could have served a package.
    let sources = run(Command::new("debugfs")
        .arg("-R")
        .arg("cat /etc/apt/sources.list")
        .arg(out.join("origin.ext4")));
    assert_eq!(
        sources.trim(),
        format!(
            "deb [trusted=yes] file://{} bookworm main",
            mirror.display()
        ),
        "{sources}"
    );
}

/// The image's own systemd judges its etcd and VC agent units in a chroot of
/// the root, with the node overlay's scripts where the node agent puts them:
/// Debian's etcd unit extended by the vlx drop-in (systemd-delta), both
/// enabled, and `systemd-analyze verify` content with them.
fn units_verify_in_the_root(origin: &std::path::Path, tmp: &std::path::Path) {
    let root = tmp.join("root");
    std::fs::create_dir(&root).unwrap();
    run(Command::new("debugfs")
        .arg("-R")
        .arg(format!("rdump / {}", root.display()))
        .arg(origin));
    let scripts = workspace().join("overlays/node/usr/lib/vlx");
    for e in std::fs::read_dir(&scripts).unwrap() {
        let e = e.unwrap();
        let to = root.join("usr/lib/vlx").join(e.file_name());
        std::fs::copy(e.path(), &to).unwrap();
    }
    let chroot = |args: &[&str]| {
        let out = Command::new("chroot")
            .arg(&root)
            .args(args)
            .output()
            .unwrap();
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code(), said)
    };
    let (code, said) = chroot(&["systemd-delta", "--type=extended"]);
    assert_eq!(code, Some(0), "{said}");
    assert!(
        said.contains("etcd.service → /etc/systemd/system/etcd.service.d/vlx.conf"),
        "{said}"
    );
    let (code, said) = chroot(&["systemctl", "is-enabled", "etcd.service", "vlx-vcd.service"]);
    assert_eq!(code, Some(0), "{said}");
    let (code, said) = chroot(&[
        "systemd-analyze",
        "verify",
        "--man=no",
        "etcd.service",
        "vlx-vcd.service",
    ]);
    assert_eq!(code, Some(0), "{said}");
    assert!(
        !said.contains("etcd") && !said.contains("vlx-"),
        "systemd-analyze verify: {said}"
    );
    // The profile's tools run inside the root, with the root's own loader
    // and libraries (what vlx-vcd.service's ConditionFileIsExecutable=
    // and a blade's admin need).
    for tool in ["vlx-vcd", "vlx-vc"] {
        let (code, said) = chroot(&[&format!("/usr/sbin/{tool}"), "--version"]);
        assert_eq!(code, Some(0), "{tool} in the root: {said}");
        assert!(said.starts_with(tool), "{tool} --version: {said}");
    }
}

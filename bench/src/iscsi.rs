//! The origin copy through iSCSI (issue 13, "Speed"): `vlx-install apply
//! --san iscsi://...` in a QEMU guest logged in to a tgt target, against
//! `dd bs=4M oflag=direct conv=fsync` of the same origin image to the same
//! LUN, in the same guest right after. Goal: the installer at least 0.9×
//! dd's rate.
//!
//! The host kernel is no iSCSI initiator, so both run in the installer
//! guest of the iSCSI rehearsal ([`iscsi_install`]): tgtd serves a sparse
//! SAN file on a storage network of its own ([`Storage`]), the guest boots
//! the install media's environment with open-iscsi and installs the demo
//! cluster on the tiny host image through its storage NIC. Then, after the
//! installer has logged out, the guest logs in again, drops its page cache
//! (so that dd, like the installer before it, reads the image from the
//! data disk and not from memory) and writes the image with dd onto the
//! LUN's `vlx-origin` partition: the same bytes at the same place, so the
//! SAN stays as installed.
//!
//! Rates: the installer's copy, by the console's clock from its origin
//! step's start line to its line `origin: done, N written at X MB/s and
//! read back in S s`, less that read back (so: read, write and the final
//! sync), and by its own whole MB/s; dd's, timed in the guest by
//! `/proc/uptime` around dd, whose time includes its `conv=fsync` as the
//! installer's includes its sync. Both are MB/s of 10^6 bytes. Both write
//! every block to the LUN with `O_DIRECT`, the image's many all-zero ones
//! too (the installer punches holes only in an image file, see
//! `installer::stream`).
//!
//! The installer hashes nothing on the way to the LUN: it reads the copy
//! back (cache dropped) and compares its sha256 with the manifest's, a
//! check dd does not make. So the bench also prints the whole origin step
//! (copy and read back) beside dd followed by busybox's `sha256sum` of the
//! same image, which the guest times after dd (page cache dropped; it reads
//! the image from the data disk, the installer its copy from the LUN):
//! about what the same check costs done by hand. The guest has [`GUEST_CPUS`] CPUs, so
//! that the installer's threads (read and write; read and hash in the read
//! back) can overlap as they do on a server; TCG runs each on a host thread
//! of its own.
//!
//! The two copies run about a minute apart, so other load on the host
//! moves the ratio: the bench prints the host's load average around the
//! guest's run; judge the ratio on an idle machine.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use cluster::MacAddr;
use qemu_tests::blade::{self, Logs};
use qemu_tests::console::Line;
use qemu_tests::iscsi::{self, IscsiRig};
use qemu_tests::iscsi_install::{self, Action};
use qemu_tests::qemu::{BootFrom, Disk, StorageNic};
use qemu_tests::run::Run;
use qemu_tests::storage::Storage;
use qemu_tests::switch::Switch;
use qemu_tests::{accel, rehearse, san, testkit, tools};

/// The installer guest's virtual CPUs.
const GUEST_CPUS: u32 = 2;

/// The installer's rate over dd's should be at least this.
const GOAL: f64 = 0.9;

/// The target's portal and the guest's address on the storage network.
const PORTAL: Ipv4Addr = Ipv4Addr::new(10, 13, 0, 250);
const GUEST: Ipv4Addr = Ipv4Addr::new(10, 13, 0, 1);
const PREFIX: u8 = 24;
const IQN: &str = "iqn.2007-01.org.vlx:bench.san0";

/// The guest's cluster NIC (plugged into a switch of its own, unused) and
/// its storage NIC.
const CLUSTER_MAC: &str = "52:54:00:13:00:01";
const STORAGE_MAC: &str = "52:54:5a:13:00:01";

/// What the guest prints when dd has ended (or could not run): `rc=N`.
const DD_RC: &str = "vlx-rig: dd rc=";
/// The guest's last line (a marker must not run into a digit, so the rc
/// line cannot be it).
const DD_END: &str = "vlx-rig: dd ended";
/// What it prints after dd: `bytes=N start=S end=E` (`/proc/uptime`).
const DD_TIMES: &str = "vlx-rig: dd bytes=";
/// What it prints after timing busybox's sha256 of the image (read from
/// the data disk, page cache dropped, nothing written): `start=S end=E
/// rc=N`.
const HASH_TIMES: &str = "vlx-rig: sha256 ";
/// The installer's line as its origin step starts (after `step N/M`).
const ORIGIN_START: &str = ": origin ...";
/// The installer's line of the origin step.
const ORIGIN_DONE: &str = "origin: done, ";

/// Power-on to dd's end: the whole install, then dd, under TCG on a
/// loaded two-core machine.
const LIMIT: Duration = Duration::from_secs(2400);

pub fn run() -> anyhow::Result<()> {
    let ws = tools::workspace_root().context("no workspace root")?;
    let run = Run::start(false)?;
    let dir = run.dir().to_owned();

    let host = ws.join("profiles/hosts/tiny.toml");
    let image = dir.join("image");
    let t = Instant::now();
    tools::build_image(&host, &image, &dir.join("vlx-image.log"))
        .context("building the tiny host image")?;
    println!(
        "tiny host image built in {:.1} s (not measured)",
        t.elapsed().as_secs_f64()
    );
    let origin = image.join(contracts::image::ORIGIN);
    let profile = profile_copy(&ws.join("profiles/clusters/demo.toml"), &dir)?;
    let cluster = rehearse::load_profile(&profile)
        .with_context(|| format!("planning {}", profile.display()))?;

    let san_path = dir.join("san.img");
    san::create(&san_path, cluster.disk.size)
        .with_context(|| format!("creating {}", san_path.display()))?;
    let rig = IscsiRig {
        switch: dir.join("storage"),
        portal: PORTAL,
        port: 3260,
        prefix: PREFIX,
        target: IQN.into(),
        lun: iscsi::LUN,
        rom: iscsi::IPXE_LKRN.into(),
        chap: None,
    };
    let logs = Logs {
        dir: dir.join("logs"),
    };
    std::fs::create_dir_all(&logs.dir).with_context(|| logs.dir.display().to_string())?;
    let _storage = Storage::start(&run, &rig, &san_path, 1, &logs.dir)
        .map_err(|e| anyhow::anyhow!("the iSCSI target: {e}"))?;
    let switch = Switch::start(&run, &dir.join("switch"), 2)?;

    let storage_mac: MacAddr = STORAGE_MAC.parse()?;
    let carry = vec![
        image.clone(),
        profile.clone(),
        host.clone(),
        ws.join("overlays/node"),
    ];
    let guest = iscsi_install::build_then(
        &dir.join("installer"),
        &rig,
        (storage_mac, GUEST),
        Action::Apply {
            profile: &profile,
            image: &image,
        },
        None,
        &carry,
        &dd_script(&rig, &origin),
    )
    .map_err(|e| anyhow::anyhow!("building the installer guest: {e}"))?;
    let probe = accel::choose(&run, Some(&guest.kernel));
    let mut m = testkit::machine(
        &dir,
        "installer",
        CLUSTER_MAC.parse()?,
        switch.sock(),
        vec![Disk {
            path: guest.data.clone(),
            shared: false,
        }],
        BootFrom::Kernel {
            kernel: guest.kernel.clone(),
            initrd: guest.initrd.clone(),
            append: "console=ttyS0,115200 panic=10".into(),
        },
        probe.accel,
    );
    m.memory_mib = qemu_tests::plan::INSTALLER_MEMORY_MIB;
    // The installer reads and writes (and in its read back, reads and
    // hashes) on threads of their own: on one CPU they take turns, as on
    // no server they would.
    m.cpus = GUEST_CPUS;
    m.storage = Some(StorageNic {
        switch: rig.switch.clone(),
        mac: storage_mac,
    });
    println!(
        "the installer guest ({}, {}) installs {} through {} from {GUEST}, then dd writes the same bytes",
        probe.accel,
        probe.why,
        cluster.cluster.name,
        iscsi_install::url(&rig)
    );
    let load_before = load_average()?;
    let t = Instant::now();
    let b = blade::power_on(&run, &m, &logs)?;
    let done = b.wait(DD_END, LIMIT);
    let lines = b.console().lines();
    b.power_off();
    let console = logs.console(&m.name);
    done.with_context(|| format!("the installer guest (console {})", console.display()))?;
    println!(
        "guest powered on to dd's end: {:.1} s; the host's 1-minute load average {load_before:.1} \
         before, {:.1} after (other load on the host's two cores slows either side)",
        t.elapsed().as_secs_f64(),
        load_average()?
    );
    let m = Measured::read(&lines).with_context(|| format!("console {}", console.display()))?;
    print(&m);
    Ok(())
}

/// The host's 1-minute load average.
fn load_average() -> anyhow::Result<f64> {
    let text = std::fs::read_to_string("/proc/loadavg").context("/proc/loadavg")?;
    text.split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("/proc/loadavg: no load average in `{}`", text.trim()))
}

/// What the guest's console said.
#[derive(Debug, Clone, PartialEq)]
struct Measured {
    /// The installer's origin line, after `origin: done, `.
    installer_said: String,
    /// The installer's own rate (whole MB/s).
    installer_own: f64,
    /// The installer's origin copy by the console's clock: its start line
    /// to its done line, less the read back it reports, seconds.
    installer_secs: f64,
    /// The installer's read back and its hash, as it reports them, seconds.
    read_back_secs: f64,
    /// The origin image's size: what both wrote.
    bytes: u64,
    /// dd's time, seconds.
    dd_secs: f64,
    /// busybox's sha256 of the image, seconds: a check like the
    /// installer's read back, on the guest's CPUs.
    hash_secs: f64,
}

impl Measured {
    fn read(lines: &[Line]) -> anyhow::Result<Measured> {
        let find = |prefix: &str| {
            lines.iter().find_map(|l| {
                l.text
                    .find(prefix)
                    .map(|i| (l.at, l.text[i + prefix.len()..].trim().to_string()))
            })
        };
        let after = |prefix: &str| find(prefix).map(|(_, t)| t);
        let rc = after(iscsi_install::INSTALL_RC).unwrap_or_default();
        if rc != "0" {
            bail!("vlx-install exited with {rc:?}, so nothing was measured");
        }
        let (done_at, said) = find(ORIGIN_DONE).context("the installer said no `origin: done`")?;
        let number_between = |from: &str, to: &str| {
            said.split_once(from)
                .and_then(|(_, r)| r.split_once(to))
                .and_then(|(r, _)| r.trim().parse::<f64>().ok())
                .with_context(|| format!("no `{from}X{to}` in `{said}`"))
        };
        let installer_own = number_between(" written at ", " MB/s")?;
        let read_back = number_between(" read back in ", " s")?;
        let start_at = lines
            .iter()
            .find(|l| l.text.trim_end().ends_with(ORIGIN_START))
            .map(|l| l.at)
            .context("the installer printed no line as its origin step started")?;
        let installer_secs = done_at.saturating_sub(start_at).as_secs_f64() - read_back;
        if installer_secs <= 0.0 {
            bail!("the origin step took no time by the console ({said})");
        }
        let rc = after(DD_RC).unwrap_or_default();
        if rc != "0" {
            let tail: Vec<&str> = lines
                .iter()
                .rev()
                .take(12)
                .map(|l| l.text.as_str())
                .collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            bail!("dd exited with {rc:?}:\n{}", tail.join("\n"));
        }
        let times = after(DD_TIMES).context("the guest printed no dd times")?;
        let bytes: u64 = times
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .parse()
            .with_context(|| format!("no byte count in `{times}`"))?;
        let dd_secs = span(&times)?;
        let hash = after(HASH_TIMES).context("the guest printed no sha256 times")?;
        if !hash.split_whitespace().any(|w| w == "rc=0") {
            bail!("busybox sha256sum failed in the guest: `{hash}`");
        }
        let hash_secs = span(&hash)?;
        Ok(Measured {
            installer_said: said,
            installer_own,
            installer_secs,
            read_back_secs: read_back,
            bytes,
            dd_secs,
            hash_secs,
        })
    }

    fn installer(&self) -> f64 {
        self.bytes as f64 / self.installer_secs / 1e6
    }

    fn dd(&self) -> f64 {
        self.bytes as f64 / self.dd_secs / 1e6
    }

    fn hash(&self) -> f64 {
        self.bytes as f64 / self.hash_secs / 1e6
    }
}

/// The seconds between `start=S` and `end=E` (`/proc/uptime`) of a line.
fn span(times: &str) -> anyhow::Result<f64> {
    let field = |key: &str| {
        times
            .split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .and_then(|v| v.parse::<f64>().ok())
            .with_context(|| format!("no `{key}` in `{times}`"))
    };
    let (start, end) = (field("start=")?, field("end=")?);
    if end <= start {
        bail!("no time passed by /proc/uptime: `{times}`");
    }
    Ok(end - start)
}

fn print(m: &Measured) {
    let (ours, dd) = (m.installer(), m.dd());
    let ratio = ours / dd;
    println!(
        "  vlx-install origin copy: {ours:>7.1} MB/s ({} bytes in {:.1} s by the console; it says `{}`)",
        m.bytes, m.installer_secs, m.installer_said
    );
    println!(
        "  dd bs=4M oflag=direct:   {dd:>7.1} MB/s ({} bytes in {:.2} s by the guest's clock, conv=fsync)",
        m.bytes, m.dd_secs
    );
    println!(
        "  installer / dd: {ratio:.2}x ({} the {GOAL:.1}x goal; by the installer's own whole MB/s: {:.2}x)",
        if ratio >= GOAL { "meets" } else { "BELOW" },
        m.installer_own / dd
    );
    println!(
        "  context: busybox sha256sum of the same bytes in the guest: {:.1} MB/s ({:.2} s), on the \
         guest's {GUEST_CPUS} emulated CPUs, which share the host's cores with the target and QEMU's I/O",
        m.hash(),
        m.hash_secs
    );
    println!(
        "  whole origin step, copy and read back against the manifest: {:.1} s; dd and then \
         sha256sum of the image: {:.1} s",
        m.installer_secs + m.read_back_secs,
        m.dd_secs + m.hash_secs
    );
}

/// The guest's lines after the installer: log in to the same LUN again,
/// find its `vlx-origin` partition, drop the page cache, and dd the origin
/// image onto it, timed by `/proc/uptime`; log out; say dd's exit code
/// last (255 when it could not run).
fn dd_script(rig: &IscsiRig, origin: &Path) -> String {
    let portal = format!("{}:{}", rig.portal, rig.port);
    let origin = origin.display();
    format!(
        r#"dd_rc=255
if iscsiadm -m discovery -t sendtargets -p '{portal}' >/dev/null && iscsiadm -m node -T '{iqn}' -p '{portal}' --login >/dev/null; then
    part=; i=0
    while [ -z "$part" ] && [ $i -lt 60 ]; do
        u=$(grep -l '^PARTNAME=vlx-origin$' /sys/class/block/sd*/uevent 2>/dev/null | head -n 1)
        if [ -n "$u" ]; then part=$(sed -n 's/^DEVNAME=//p' "$u"); else sleep 1; i=$((i+1)); fi
    done
    if [ -n "$part" ]; then
        bytes=$(stat -c %s '{origin}')
        echo "vlx-rig: dd of {origin} to /dev/$part (vlx-origin on the LUN)"
        sync; echo 3 > /proc/sys/vm/drop_caches
        t0=$(cut -d' ' -f1 /proc/uptime)
        dd if='{origin}' of="/dev/$part" bs=4M oflag=direct conv=fsync
        dd_rc=$?
        t1=$(cut -d' ' -f1 /proc/uptime)
        echo "{DD_TIMES}$bytes start=$t0 end=$t1"
        sync; echo 3 > /proc/sys/vm/drop_caches
        h0=$(cut -d' ' -f1 /proc/uptime)
        sha256sum '{origin}' >/dev/null
        h_rc=$?
        h1=$(cut -d' ' -f1 /proc/uptime)
        echo "{HASH_TIMES}start=$h0 end=$h1 rc=$h_rc"
    else
        echo "vlx-rig: no vlx-origin partition on the LUN"
    fi
    iscsiadm -m node -T '{iqn}' -p '{portal}' --logout >/dev/null
else
    echo "vlx-rig: dd: cannot log in to {iqn} at {portal}"
fi
echo "{DD_RC}$dd_rc"
echo "{DD_END}""#,
        iqn = rig.target,
    )
}

/// The demo profile with its paths made absolute, so that it can live in
/// `dir` (and the guest find them at the same paths on its data disk).
fn profile_copy(demo: &Path, dir: &Path) -> anyhow::Result<PathBuf> {
    let text = std::fs::read_to_string(demo).with_context(|| demo.display().to_string())?;
    let base = demo.parent().context("the demo profile has no folder")?;
    let abs = |rel: &str| -> anyhow::Result<String> {
        let p = base.join(rel);
        let c = std::fs::canonicalize(&p).with_context(|| p.display().to_string())?;
        Ok(format!("{:?}", c.display().to_string()))
    };
    let text = text
        .replace("\"../hosts/tiny.toml\"", &abs("../hosts/tiny.toml")?)
        .replace("\"../../overlays/node\"", &abs("../../overlays/node")?);
    let path = dir.join("demo.toml");
    std::fs::write(&path, text).with_context(|| path.display().to_string())?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Console lines one second apart.
    fn lines(text: &str) -> Vec<Line> {
        text.lines()
            .enumerate()
            .map(|(i, t)| Line {
                at: Duration::from_secs(i as u64),
                text: t.to_owned(),
            })
            .collect()
    }

    #[test]
    fn both_rates_from_the_console() {
        let m = Measured::read(&lines(
            "vlx-install: step 3/8: origin ...\n\
             \n\
             \n\
             \n\
             \n\
             \n\
             vlx-install: origin: done, 375 MiB written at 42 MB/s and read back in 2.0 s, sha256 ab\n\
             vlx-rig: install rc=0\n\
             vlx-rig: dd bytes=400000000 start=100.50 end=110.50\n\
             vlx-rig: sha256 start=111.00 end=116.00 rc=0\n\
             vlx-rig: dd rc=0\n",
        ))
        .unwrap();
        assert_eq!(m.installer_own, 42.0);
        assert_eq!(m.bytes, 400_000_000);
        // Start line at 0 s, done at 6 s, less 2 s of read back.
        assert!((m.installer_secs - 4.0).abs() < 1e-9, "{m:?}");
        assert!((m.read_back_secs - 2.0).abs() < 1e-9, "{m:?}");
        assert!((m.installer() - 100.0).abs() < 1e-9);
        assert!((m.dd() - 40.0).abs() < 1e-9);
        assert!((m.hash() - 80.0).abs() < 1e-9);
        let failed = Measured::read(&lines("vlx-rig: install rc=2\n")).unwrap_err();
        assert!(failed.to_string().contains("\"2\""), "{failed}");
        let no_dd = Measured::read(&lines(
            "vlx-install: step 3/8: origin ...\n\
             vlx-install: origin: done, 1 MiB written at 4 MB/s and read back in 0.1 s\n\
             vlx-rig: install rc=0\nvlx-rig: dd rc=255\n",
        ))
        .unwrap_err();
        assert!(no_dd.to_string().contains("\"255\""), "{no_dd}");
        let no_hash = Measured::read(&lines(
            "vlx-install: step 3/8: origin ...\n\
             vlx-install: origin: done, 1 MiB written at 4 MB/s and read back in 0.1 s\n\
             vlx-rig: install rc=0\n\
             vlx-rig: dd bytes=1048576 start=1.0 end=2.0\n\
             vlx-rig: sha256 start=2.0 end=3.0 rc=1\n\
             vlx-rig: dd rc=0\n",
        ))
        .unwrap_err();
        assert!(
            no_hash.to_string().contains("sha256sum failed"),
            "{no_hash}"
        );
    }

    #[test]
    fn the_guest_ends_on_a_marker_it_can_wait_for() {
        let script = dd_script(
            &IscsiRig {
                switch: "/r/storage".into(),
                portal: PORTAL,
                port: 3260,
                prefix: PREFIX,
                target: IQN.into(),
                lun: 1,
                rom: iscsi::IPXE_LKRN.into(),
                chap: None,
            },
            Path::new("/i/origin.ext4"),
        );
        assert!(script.trim_end().ends_with(&format!("echo \"{DD_END}\"")));
        assert!(qemu_tests::console::has_word(DD_END, DD_END));
        assert!(script.contains("of=\"/dev/$part\" bs=4M oflag=direct conv=fsync"));
        assert!(script.contains("--login") && script.contains("--logout"));
    }
}

//! The executor on real links: three "blades" as network namespaces on one
//! bridge, each "VM" a namespace behind a veth whose blade end has the VM's
//! tap name (in place of QEMU's tap). Applies every blade's part of the plan
//! and checks routes, reachability and insulation with `ip`, `nft`, `ping`
//! and sockets opened inside the namespaces. Needs root (network
//! namespaces); it fails, saying so, where it cannot run.
//!
//! Every address is namespace-local: nothing leaves this machine.

#![allow(clippy::unwrap_used)] // helpers panic on setup errors by design

mod common;

use common::{ok, sh};

use std::fs::File;
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::time::Duration;

use vc_net::apply::{self, Netns};
use vc_net::{NetInput, NetPlan};

/// How long a probe waits for an answer: a tool's timeout, not an assertion
/// on speed (every check below looks at what came back, not when).
const PROBE: Duration = Duration::from_secs(5);

/// The namespaces of one test; deleted on drop (which removes their links).
struct Lab {
    prefix: String,
    made: Vec<String>,
}

impl Lab {
    fn new(tag: &str) -> Lab {
        // SAFETY: getuid has no preconditions and cannot fail.
        let root = unsafe { libc::getuid() } == 0;
        assert!(
            root,
            "this test builds network namespaces and must run as root"
        );
        Lab {
            prefix: format!("vcn{}{tag}", std::process::id()),
            made: Vec::new(),
        }
    }

    fn ns(&self, name: &str) -> String {
        format!("{}-{name}", self.prefix)
    }

    fn add(&mut self, name: &str) -> String {
        let ns = self.ns(name);
        ok(&["ip", "netns", "add", &ns]);
        self.made.push(ns.clone());
        ok(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
        ns
    }

    /// The bridge and three blades at 10.77.0.11-13.
    fn blades(&mut self, input: &NetInput) {
        let lan = self.add("lan");
        ok(&["ip", "-n", &lan, "link", "add", "br0", "type", "bridge"]);
        ok(&["ip", "-n", &lan, "link", "set", "br0", "up"]);
        for b in &input.blades {
            let ns = self.add(&b.name);
            ok(&[
                "ip", "-n", &ns, "link", "add", "eth0", "type", "veth", "peer", "name", &b.name,
                "netns", &lan,
            ]);
            ok(&[
                "ip", "-n", &lan, "link", "set", &b.name, "master", "br0", "up",
            ]);
            ok(&[
                "ip",
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{}/24", b.addr),
                "dev",
                "eth0",
            ]);
            ok(&["ip", "-n", &ns, "link", "set", "eth0", "up"]);
        }
    }

    /// A VM's namespace, if new, and its NIC: a veth whose other end is its
    /// tap on `blade`, with the address and default route DHCP would give.
    fn plug_vm(&mut self, plan: &NetPlan, vc: &str, vm: &str) {
        let v = plan.vm(vc, vm).unwrap();
        let c = plan.vcs.iter().find(|c| c.name == vc).unwrap();
        let name = format!("{vc}-{vm}");
        let ns = if self.made.contains(&self.ns(&name)) {
            self.ns(&name)
        } else {
            self.add(&name)
        };
        let blade = self.ns(&v.blade);
        ok(&[
            "ip",
            "-n",
            &ns,
            "link",
            "add",
            "eth0",
            "address",
            &v.mac.to_string(),
            "type",
            "veth",
            "peer",
            "name",
            &v.tap,
            "netns",
            &blade,
        ]);
        ok(&[
            "ip",
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{}/{}", v.addr, c.subnet.prefix()),
            "dev",
            "eth0",
        ]);
        ok(&["ip", "-n", &ns, "link", "set", "eth0", "up"]);
        ok(&[
            "ip",
            "-n",
            &ns,
            "route",
            "add",
            "default",
            "via",
            &c.gateway.to_string(),
        ]);
    }

    fn apply_all(&self, plan: &NetPlan) -> Vec<apply::Report> {
        plan.blades
            .iter()
            .map(|b| {
                let part = plan.blade(&b.name).unwrap();
                apply::apply(&Netns::Named(self.ns(&b.name)), plan, &part)
                    .unwrap_or_else(|e| panic!("applying blade {}: {e}", b.name))
            })
            .collect()
    }

    /// `ping` from a VM; its exit code and what it printed.
    fn ping(&self, plan: &NetPlan, from: (&str, &str), to: (&str, &str)) -> (i32, String) {
        let dest = plan.vm(to.0, to.1).unwrap().addr.to_string();
        let out = sh(&[
            "ip",
            "netns",
            "exec",
            &self.ns(&format!("{}-{}", from.0, from.1)),
            "ping",
            "-n",
            "-c",
            "1",
            "-W",
            &PROBE.as_secs().to_string(),
            &dest,
        ]);
        (
            out.status.code().unwrap_or(-1),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    /// `route <vm> via <blade>` as `blade` sees it: the next hop or device of
    /// vlx's route to the VM.
    fn route(&self, blade: &str, dest: &str) -> Option<String> {
        apply::routes(&Netns::Named(self.ns(blade)))
            .unwrap()
            .into_iter()
            .find(|(d, _)| d == dest)
            .map(|(_, hop)| hop)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let run = std::env::temp_dir().join(format!("{}-run", self.prefix));
        if run.exists() {
            if let Err(e) = std::fs::remove_dir_all(&run) {
                eprintln!("could not remove {}: {e}", run.display());
            }
        }
        for ns in self.made.iter().rev() {
            let out = Command::new("ip").args(["netns", "del", ns]).output();
            if !matches!(&out, Ok(o) if o.status.success()) {
                eprintln!("could not delete network namespace {ns}: {out:?}");
            }
        }
    }
}

/// Runs `f` on a thread that has entered network namespace `ns`. Sockets
/// made there stay in it after the thread ends.
fn in_ns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            let path = format!("/run/netns/{ns}");
            let file = File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            // SAFETY: setns only changes this thread's network namespace; the
            // fd is open for the duration of the call.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .unwrap()
    })
}

fn connect(ns: &str, to: &str) -> std::io::Result<TcpStream> {
    let to: SocketAddr = to.parse().unwrap();
    in_ns(ns, || TcpStream::connect_timeout(&to, PROBE))
}

#[test]
fn vc_networks_across_three_blade_namespaces() {
    let mut input = common::demo();
    let plan = NetPlan::new(&input).unwrap();
    let mut lab = Lab::new("a");
    lab.blades(&input);
    for vc in &plan.vcs {
        for vm in &vc.vms {
            lab.plug_vm(&plan, &vc.name, &vm.name);
        }
    }
    lab.apply_all(&plan);

    // route a/vm2 via b2, on the blades that do not run it.
    assert_eq!(lab.route("b1", "10.200.0.3").as_deref(), Some("10.77.0.12"));
    assert_eq!(lab.route("b3", "10.200.0.3").as_deref(), Some("10.77.0.12"));
    assert_eq!(
        lab.route("b2", "10.200.0.3").as_deref(),
        Some("vx0276000a0002")
    );

    // vc ping a/vm1 -> a/vm2 (b1 to b2), and to a/vm3 on the same blade.
    let (code, out) = lab.ping(&plan, ("a", "vm1"), ("a", "vm2"));
    assert_eq!(code, 0, "a/vm1 -> a/vm2: {out}");
    let (code, out) = lab.ping(&plan, ("a", "vm1"), ("a", "vm3"));
    assert_eq!(code, 0, "a/vm1 -> a/vm3: {out}");
    let (code, out) = lab.ping(&plan, ("b", "vm1"), ("b", "vm2"));
    assert_eq!(code, 0, "b/vm1 -> b/vm2: {out}");

    // vc isolation a -/-> b: refused by a's blade, on another blade or its own.
    for to in [("b", "vm2"), ("b", "vm1")] {
        let (code, out) = lab.ping(&plan, ("a", "vm1"), to);
        assert_eq!(code, 1, "a/vm1 -> {to:?} must get no answer: {out}");
        assert!(out.contains("Packet filtered"), "a/vm1 -> {to:?}: {out}");
    }

    // No blade's SSH, from a VM: not its own blade's (by its cluster address
    // or its gateway), not another's. Blade b2 reaches b1's port (the
    // listener is there).
    let b1 = lab.ns("b1");
    let b2 = lab.ns("b2");
    let vm = lab.ns("a-vm1");
    let _ssh1 = in_ns(&b1, || TcpListener::bind("0.0.0.0:22")).unwrap();
    let _ssh2 = in_ns(&b2, || TcpListener::bind("0.0.0.0:22")).unwrap();
    connect(&b2, "10.77.0.11:22").expect("b2 reaches b1's port 22");
    for to in ["10.77.0.11:22", "10.200.0.1:22", "10.77.0.12:22"] {
        let e = connect(&vm, to).expect_err(to);
        assert_eq!(
            e.raw_os_error(),
            Some(libc::EHOSTUNREACH),
            "a/vm1 -> {to}: {e} (want the blade's admin-prohibited reject)"
        );
    }

    // No blade's DHCP server port: b2's datagram reaches b1's port 67, the
    // VM's is refused by its blade.
    let dhcp = in_ns(&b1, || UdpSocket::bind("0.0.0.0:67")).unwrap();
    dhcp.set_read_timeout(Some(PROBE)).unwrap();
    in_ns(&b2, || {
        UdpSocket::bind("0.0.0.0:0")
            .unwrap()
            .send_to(b"b2", "10.77.0.11:67")
    })
    .unwrap();
    let mut buf = [0u8; 16];
    let (n, from) = dhcp.recv_from(&mut buf).expect("b2's datagram");
    assert_eq!(
        (&buf[..n], from.ip().to_string()),
        (&b"b2"[..], "10.77.0.12".to_string())
    );
    let refused = in_ns(&vm, || {
        let s = UdpSocket::bind("0.0.0.0:0").unwrap();
        s.connect("10.77.0.11:67").unwrap();
        s.set_read_timeout(Some(PROBE)).unwrap();
        s.send(b"vm").unwrap();
        s.recv(&mut [0u8; 16])
    });
    let e = refused.expect_err("a VM's datagram to a blade's port 67 has no answer");
    assert_eq!(e.raw_os_error(), Some(libc::EHOSTUNREACH), "{e}");

    // Re-applying the same plan changes nothing.
    for r in lab.apply_all(&plan) {
        assert!(
            r.taps_added.is_empty() && r.taps_removed.is_empty() && r.routes_removed.is_empty(),
            "{r:?}"
        );
    }

    // a/vm2 moves from b2 to b3: b2 loses its tap, every blade routes it via b3.
    input.vcs[0].vms[1].blade = "b3".into();
    let moved = NetPlan::new(&input).unwrap();
    let part = moved.blade("b2").unwrap();
    let r = apply::apply(&Netns::Named(b2.clone()), &moved, &part).unwrap();
    assert_eq!(r.taps_removed, ["vx0276000a0002"]);
    lab.plug_vm(&moved, "a", "vm2");
    let reports = lab.apply_all(&moved);
    assert!(
        reports.iter().all(|r| r.taps_added.is_empty()),
        "{reports:?}"
    );
    assert_eq!(lab.route("b1", "10.200.0.3").as_deref(), Some("10.77.0.13"));
    assert_eq!(lab.route("b2", "10.200.0.3").as_deref(), Some("10.77.0.13"));
    assert_eq!(
        lab.route("b3", "10.200.0.3").as_deref(),
        Some("vx0276000a0002")
    );
    assert!(
        !apply::taps(&Netns::Named(b2.clone()))
            .unwrap()
            .contains("vx0276000a0002")
    );
    let (code, out) = lab.ping(&moved, ("a", "vm1"), ("a", "vm2"));
    assert_eq!(code, 0, "a/vm1 -> a/vm2 after the move: {out}");

    // The same through the command line: nothing left to change on b1.
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state.json");
    std::fs::write(&state, serde_json::to_string(&input).unwrap()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_vlx-vc-net"))
        .args([
            "apply",
            "--blade",
            "b1",
            "--netns",
            &lab.ns("b1"),
            "--input",
        ])
        .arg(&state)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        text,
        "vlx-vc-net: blade b1: 3 local VM(s), 5 route(s); taps added [], removed []; routes removed []\n"
    );
    let (code, out) = lab.ping(&moved, ("a", "vm2"), ("b", "vm2"));
    assert_eq!(code, 1, "a/vm2 -> b/vm2 after the move: {out}");
    assert!(out.contains("Packet filtered"), "{out}");
}

/// `vc dns`, DHCP, storage and `vc outside`: the blade's rendered dnsmasq
/// answers a VM's DHCP on its tap with its fixed address and its VC's names;
/// a VM reaches the storage address's NFS port (and no other) with its own
/// address; a VM of a VC that allows the outside reaches a host beyond its
/// blade, masqueraded; a VM of a VC that does not is refused.
#[test]
fn dhcp_dns_and_the_outside_from_vm_namespaces() {
    let input = common::demo();
    let plan = NetPlan::new(&input).unwrap();
    let mut lab = Lab::new("d");
    lab.blades(&input);
    lab.plug_vm(&plan, "a", "vm1");
    lab.plug_vm(&plan, "b", "vm1");
    lab.apply_all(&plan);
    let b1 = lab.ns("b1");

    // The outside: a host at 172.31.0.2 behind b1's second link. It has no
    // route to any VC subnet: it can only answer a masqueraded VM.
    let out = lab.add("out");
    ok(&[
        "ip", "-n", &out, "link", "add", "eth0", "type", "veth", "peer", "name", "eth1", "netns",
        &b1,
    ]);
    ok(&[
        "ip",
        "-n",
        &out,
        "addr",
        "add",
        "172.31.0.2/24",
        "dev",
        "eth0",
    ]);
    ok(&["ip", "-n", &out, "link", "set", "eth0", "up"]);
    ok(&[
        "ip",
        "-n",
        &b1,
        "addr",
        "add",
        "172.31.0.1/24",
        "dev",
        "eth1",
    ]);
    ok(&["ip", "-n", &b1, "link", "set", "eth1", "up"]);
    let web = in_ns(&out, || TcpListener::bind("172.31.0.2:80")).unwrap();
    let a1 = lab.ns("a-vm1");
    let b1vm = lab.ns("b-vm1");
    connect(&a1, "172.31.0.2:80").expect("a/vm1 reaches the outside");
    let (_, peer) = web.accept().unwrap();
    assert_eq!(peer.ip().to_string(), "172.31.0.1", "masqueraded by b1");
    let e = connect(&b1vm, "172.31.0.2:80").expect_err("VC b has no outside");
    assert_eq!(e.raw_os_error(), Some(libc::EHOSTUNREACH), "{e}");

    // Shared storage: the NFS port of the storage address (held by b2 here)
    // from a VM of b1, with the VM's own address (exports go to a VC's
    // subnet); no other port of it.
    let b2 = lab.ns("b2");
    ok(&[
        "ip",
        "-n",
        &b2,
        "addr",
        "add",
        "10.77.0.250/24",
        "dev",
        "eth0",
    ]);
    let nfs = in_ns(&b2, || TcpListener::bind("10.77.0.250:2049")).unwrap();
    let _ssh = in_ns(&b2, || TcpListener::bind("10.77.0.250:22")).unwrap();
    connect(&a1, "10.77.0.250:2049").expect("a/vm1 reaches NFS");
    let (_, peer) = nfs.accept().unwrap();
    assert_eq!(peer.ip().to_string(), "10.200.0.2", "not masqueraded");
    let e = connect(&a1, "10.77.0.250:22").expect_err("only NFS of the storage address");
    assert_eq!(e.raw_os_error(), Some(libc::EHOSTUNREACH), "{e}");

    // dnsmasq on b1 with its rendered config; only its run files are moved
    // to a directory of this test.
    let run = std::env::temp_dir().join(format!("{}-run", lab.prefix));
    std::fs::create_dir_all(&run).unwrap();
    let conf = vc_net::render::dnsmasq(&plan, &plan.blade("b1").unwrap())
        .replace("/run/vlx/", &format!("{}/", run.display()));
    let conf_path = run.join("dnsmasq.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let dnsmasq = Command::new("ip")
        .args(["netns", "exec", &b1, "dnsmasq", "--keep-in-foreground"])
        .arg(format!("--conf-file={}", conf_path.display()))
        .spawn()
        .expect("dnsmasq starts");
    let _dnsmasq = Child(dnsmasq);

    // DHCP: udhcpc in a/vm1 gets its fixed address, router and DNS server.
    let script = run.join("udhcpc.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\n[ \"$1\" = bound ] && echo \"lease ip=$ip router=$router dns=$dns domain=$domain\"\nexit 0\n",
    )
    .unwrap();
    ok(&["chmod", "755", script.to_str().unwrap()]);
    let got = sh(&[
        "ip",
        "netns",
        "exec",
        &a1,
        "busybox",
        "udhcpc",
        "-i",
        "eth0",
        "-f",
        "-q",
        "-n",
        "-t",
        "5",
        "-T",
        "1",
        "-s",
        script.to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&got.stdout);
    assert!(
        got.status.success(),
        "udhcpc: {text}{}",
        String::from_utf8_lossy(&got.stderr)
    );
    assert!(
        text.contains(
            "lease ip=10.200.0.2 router=10.200.0.1 dns=10.200.0.1 domain=a.demo.vlx.test"
        ),
        "{text}"
    );

    // vc dns: names of its VC (a VM on another blade too) from its gateway.
    for (name, addr) in [
        ("vm1.a.demo.vlx.test", "10.200.0.2"),
        ("vm2.a.demo.vlx.test", "10.200.0.3"),
    ] {
        let got = sh(&[
            "ip",
            "netns",
            "exec",
            &a1,
            "busybox",
            "nslookup",
            name,
            "10.200.0.1",
        ]);
        let text = String::from_utf8_lossy(&got.stdout);
        assert!(got.status.success(), "nslookup {name}: {text}");
        assert!(text.contains(&format!("Address: {addr}")), "{name}: {text}");
    }
    // VC b's gateway on b1 does not answer a VM of VC a.
    let got = sh(&[
        "ip",
        "netns",
        "exec",
        &a1,
        "busybox",
        "nslookup",
        "vm1.a.demo.vlx.test",
        "10.200.1.1",
    ]);
    let err = String::from_utf8_lossy(&got.stderr);
    assert_eq!(got.status.code(), Some(1), "{err}");
    assert!(err.contains("No route to host"), "rejected by b1: {err}");
}

/// A process this test started, killed (by its id) and reaped on drop.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

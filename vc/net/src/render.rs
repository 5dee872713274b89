//! One blade's part of a [`NetPlan`] as text: routes, nftables, dnsmasq,
//! NFS exports. Pure: the same plan gives the same bytes.

use std::fmt::Write as _;
use std::net::Ipv4Addr;

use uuid::Uuid;

use crate::model::{BladeNet, NetPlan, TAP_PREFIX, VcNet};

/// The routing protocol number marking the routes vlx programs (`ip route
/// ... proto 118`), so that the executor removes stale routes of its own and
/// never anybody else's. 118 is unassigned in iproute2's `rt_protos` (the
/// well-known daemons use 1–16, 42, 186–192).
pub const ROUTE_PROTO: u8 = 118;

/// The nftables table that holds every VC rule of a blade. It is replaced
/// whole, atomically, by each apply.
pub const NFT_TABLE: &str = "vlx_vc";

/// Where a VC's shared directory lies under the shared volume's mount:
/// apart from `vcs/`, where the VM executor keeps the VMs' disks, saved
/// memory and consoles, which no VM may read over its share.
pub const VC_DIR: &str = "vc-shares";

/// Where every VM mounts its VC's shared directory.
pub const GUEST_SHARED_MOUNT: &str = "/vc";

/// NFS port: the only storage port a VM may reach (NFSv4 needs no other).
pub const NFS_PORT: u16 = 2049;

/// The `ip -batch` lines that put this blade's routes in place: a /32 on
/// each local VM's tap, and a /32 via its blade to every other VM.
pub fn routes(b: &BladeNet) -> String {
    let mut s = String::new();
    for vm in &b.local {
        let _ = writeln!(
            s,
            "route replace {}/32 dev {} proto {ROUTE_PROTO} scope link",
            vm.addr, vm.tap
        );
    }
    for r in &b.routes {
        let _ = writeln!(
            s,
            "route replace {}/32 via {} proto {ROUTE_PROTO}",
            r.dest, r.via
        );
    }
    s
}

fn elements(items: &[String]) -> String {
    if items.is_empty() {
        String::new()
    } else {
        format!("\t\telements = {{ {} }}\n", items.join(", "))
    }
}

/// The blade's nftables ruleset for `nft -f`: one table, [`NFT_TABLE`],
/// deleted and re-created in the same transaction.
///
/// What a VM may do (everything else is rejected at its own blade, and
/// dropped again at the blade of the VM it aims at):
/// - send only from its own address on its own tap (no spoofing);
/// - reach every VM of its own VC, on any blade;
/// - reach its gateway on its tap: DHCP, DNS, ping;
/// - reach the shared storage's NFS port;
/// - if its VC allows it, reach the outside (anything that is neither a VC
///   subnet nor a cluster network nor a blade), masqueraded by its blade.
///
/// Blades may reach every VM (administration): a VM's replies to its own
/// blade are let in; replies to what a VM began come back. IPv6 from taps is dropped: VC networks are IPv4.
pub fn nftables(plan: &NetPlan, b: &BladeNet) -> String {
    let vm_addr: Vec<String> = b
        .local
        .iter()
        .map(|v| format!("\"{}\" . {}", v.tap, v.addr))
        .collect();
    let vm_gw: Vec<String> = b
        .local
        .iter()
        .map(|v| format!("\"{}\" . {}", v.tap, v.gateway))
        .collect();
    let blades: Vec<String> = plan.blades.iter().map(|b| b.addr.to_string()).collect();
    let mut not_outside: Vec<String> = plan
        .cluster_nets
        .iter()
        .map(|n| n.cidr.to_string())
        .collect();
    not_outside.extend(plan.vcs.iter().map(|v| v.subnet.to_string()));
    not_outside.extend(blades.iter().cloned());
    not_outside.push(plan.storage.to_string());
    let wild = format!("\"{TAP_PREFIX}*\"");
    let storage = plan.storage;

    let mut s = String::new();
    let _ = writeln!(
        s,
        "# vlx: VC networks on blade {} (rendered from the VC state; do not edit)",
        b.blade.name
    );
    let _ = writeln!(s, "table inet {NFT_TABLE}");
    let _ = writeln!(s, "delete table inet {NFT_TABLE}");
    let _ = writeln!(s, "table inet {NFT_TABLE} {{");
    let _ = write!(
        s,
        "\t# Each local VM's tap and its address.\n\tset vm_addr {{\n\t\ttype ifname . ipv4_addr\n{}\t}}\n\n",
        elements(&vm_addr)
    );
    let _ = write!(
        s,
        "\t# Each local VM's tap and its VC's gateway.\n\tset vm_gw {{\n\t\ttype ifname . ipv4_addr\n{}\t}}\n\n",
        elements(&vm_gw)
    );
    let _ = write!(
        s,
        "\tset blades {{\n\t\ttype ipv4_addr\n{}\t}}\n\n",
        elements(&blades)
    );
    let _ = write!(
        s,
        "\t# What is not the outside: the cluster's networks, every VC, the blades.\n\tset not_outside {{\n\t\ttype ipv4_addr\n\t\tflags interval\n\t\tauto-merge\n{}\t}}\n\n",
        elements(&not_outside)
    );

    let _ = write!(
        s,
        "\tchain input {{\n\t\ttype filter hook input priority filter - 10; policy accept;\n\t\tiifname {wild} jump vm_to_blade\n\t}}\n\n"
    );
    let _ = write!(
        s,
        "\t# A VM talks to its blade: DHCP, DNS and ping on its gateway, NFS if\n\t# this blade holds the storage address; nothing else of the blade.\n\tchain vm_to_blade {{\n\
         \t\tmeta nfproto ipv6 drop\n\
         \t\tip saddr 0.0.0.0 ip daddr 255.255.255.255 udp sport 68 udp dport 67 accept\n\
         \t\tiifname . ip saddr != @vm_addr drop\n\
         \t\tct state established,related accept\n\
         \t\tiifname . ip daddr @vm_gw udp dport {{ 53, 67 }} accept\n\
         \t\tiifname . ip daddr @vm_gw tcp dport 53 accept\n\
         \t\tiifname . ip daddr @vm_gw icmp type echo-request accept\n\
         \t\tip daddr 255.255.255.255 udp sport 68 udp dport 67 accept\n\
         \t\tip daddr {storage} tcp dport {NFS_PORT} accept\n\
         \t\treject with icmpx type admin-prohibited\n\t}}\n\n"
    );
    let _ = write!(
        s,
        "\tchain forward {{\n\t\ttype filter hook forward priority filter - 10; policy accept;\n\t\tiifname {wild} jump from_vm\n\t\toifname {wild} jump to_vm\n\t}}\n\n"
    );
    let _ = write!(
        s,
        "\t# A VM's packets routed by its blade.\n\tchain from_vm {{\n\
         \t\tmeta nfproto ipv6 drop\n\
         \t\tiifname . ip saddr != @vm_addr drop\n\
         \t\toifname {wild} oifname . ip daddr != @vm_addr drop\n"
    );
    for vc in &plan.vcs {
        let _ = writeln!(s, "{}", same_vc(vc));
    }
    let _ = writeln!(s, "\t\tip daddr {storage} tcp dport {NFS_PORT} accept");
    for vc in plan.vcs.iter().filter(|v| v.outside) {
        let _ = writeln!(
            s,
            "\t\tip saddr {} ip daddr != @not_outside accept comment \"VC {} outside\"",
            vc.subnet, vc.name
        );
    }
    let _ = write!(s, "\t\treject with icmpx type admin-prohibited\n\t}}\n\n");
    let _ = write!(
        s,
        "\t# Packets to a local VM.\n\tchain to_vm {{\n\
         \t\tmeta nfproto ipv6 drop\n\
         \t\toifname . ip daddr != @vm_addr drop\n\
         \t\tct state established,related accept\n\
         \t\tip saddr @blades accept\n"
    );
    for vc in &plan.vcs {
        let _ = writeln!(s, "{}", same_vc(vc));
    }
    let _ = write!(s, "\t\tdrop\n\t}}\n\n");
    let _ = write!(
        s,
        "\tchain postrouting {{\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n"
    );
    for vc in plan.vcs.iter().filter(|v| v.outside) {
        let _ = writeln!(
            s,
            "\t\toifname != {wild} ip saddr {} ip daddr != @not_outside masquerade comment \"VC {} outside\"",
            vc.subnet, vc.name
        );
    }
    let _ = write!(s, "\t}}\n}}\n");
    s
}

fn same_vc(vc: &VcNet) -> String {
    format!(
        "\t\tip saddr {0} ip daddr {0} accept comment \"VC {1}\"",
        vc.subnet, vc.name
    )
}

/// The name a VM answers to: `VM.VC.DOMAIN`.
pub fn fqdn(plan: &NetPlan, vc: &str, vm: &str) -> String {
    format!("{vm}.{vc}.{}", plan.domain)
}

/// The blade's dnsmasq config for VC networks: DHCP on the taps of its
/// local VMs (each VM's fixed address, its gateway as router and DNS
/// server), and the names of every VM of every VC. It runs as its own
/// dnsmasq instance, bound only to the taps (`bind-dynamic`, so taps may come
/// and go; not loopback, which dnsmasq would add and the cluster's holds),
/// beside the cluster's.
pub fn dnsmasq(plan: &NetPlan, b: &BladeNet) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# vlx: VC networks on blade {}: DHCP for its VMs, names of every VC\n# (rendered from the VC state; do not edit)",
        b.blade.name
    );
    let _ = writeln!(s, "interface={TAP_PREFIX}*");
    // dnsmasq adds loopback to any `interface=` list; the cluster dnsmasq
    // (also bind-dynamic) holds 127.0.0.1:53, and VMs never ask there.
    s.push_str("except-interface=lo\n");
    s.push_str(
        "bind-dynamic\nno-resolv\nno-hosts\ndomain-needed\nbogus-priv\ndhcp-authoritative\n\
         dhcp-leasefile=/run/vlx/vc-dnsmasq.leases\npid-file=/run/vlx/vc-dnsmasq.pid\n",
    );
    for server in &plan.upstream_dns {
        let _ = writeln!(s, "server={server}");
    }
    for vc in &plan.vcs {
        let domain = format!("{}.{}", vc.name, plan.domain);
        let _ = writeln!(s, "\n# VC {} ({})", vc.name, vc.subnet);
        let _ = writeln!(s, "local=/{domain}/");
        if b.local.iter().any(|l| l.vc == vc.name) {
            let tag = format!("vc-{}", vc.name);
            // Qualifies the VMs' DHCP names (a `vm1` in every VC) and sends
            // the domain-name option.
            let _ = writeln!(s, "domain={domain},{}", vc.subnet);
            let _ = writeln!(
                s,
                "dhcp-range=set:{tag},{},static,{},1h",
                vc.subnet.network(),
                vc.subnet.netmask()
            );
            let _ = writeln!(s, "dhcp-option=tag:{tag},option:router,{}", vc.gateway);
            let _ = writeln!(s, "dhcp-option=tag:{tag},option:dns-server,{}", vc.gateway);
            let _ = writeln!(s, "dhcp-option=tag:{tag},option:domain-search,{domain}");
            for l in b.local.iter().filter(|l| l.vc == vc.name) {
                let _ = writeln!(s, "dhcp-host={},{},{}", l.mac, l.addr, l.vm);
            }
        }
        for vm in &vc.vms {
            let _ = writeln!(s, "host-record={}.{domain},{}", vm.name, vm.addr);
        }
    }
    s
}

/// A VC's directory on the shared volume (on the blade that holds it).
pub fn vc_dir(plan: &NetPlan, vc: &str) -> String {
    vc_dir_in(&plan.shared_dir, vc)
}

/// A VC's directory under the shared volume's mount `shared_dir`.
pub fn vc_dir_in(shared_dir: &str, vc: &str) -> String {
    format!("{}/{VC_DIR}/{vc}", shared_dir.trim_end_matches('/'))
}

/// What a VM of `vc` mounts: `STORAGE:DIR` (its fstab's source, the
/// tiny guest's `vlx.share=`). The same path on either NFS server.
pub fn share_source(storage: Ipv4Addr, shared_dir: &str, vc: &str) -> String {
    format!("{storage}:{}", vc_dir_in(shared_dir, vc))
}

/// The `fsid` of a VC's export: derived from its name, the same on every
/// blade, so that clients' file handles survive a move of the storage
/// address.
pub fn export_fsid(vc: &str) -> Uuid {
    Uuid::new_v5(
        &Uuid::NAMESPACE_OID,
        format!("vlx.vc-export.{vc}").as_bytes(),
    )
}

/// The `/etc/exports` lines of every VC: its directory, to its subnet only.
/// `mountpoint=` ties each to the shared volume being mounted, as the
/// cluster's own export is.
pub fn exports(plan: &NetPlan) -> String {
    let mut s =
        String::from("# vlx: VC shared directories (rendered from the VC state; do not edit)\n");
    for vc in &plan.vcs {
        let _ = writeln!(
            s,
            "{}\t{}(rw,sync,no_subtree_check,root_squash,mountpoint={},fsid={})",
            vc_dir(plan, &vc.name),
            vc.subnet,
            plan.shared_dir,
            export_fsid(&vc.name)
        );
    }
    s
}

/// The `Export_Id` of a VC's export on nfs-ganesha (1..=65535; 0 is the
/// pseudo root), for every VC of the plan in its order: taken from the
/// VC's [`export_fsid`], so that it is the same on every blade and, like
/// the fsid, survives a move of the storage address (ganesha's file
/// handles carry it). Two VCs whose names give the same number: the later
/// in the plan's order takes the next free one. Ganesha has 65535 ids: past
/// that many VCs, ids repeat (and ganesha refuses the repeated exports).
pub fn export_ids(plan: &NetPlan) -> Vec<(&str, u16)> {
    let mut taken = std::collections::BTreeSet::new();
    let mut ids = Vec::new();
    for vc in &plan.vcs {
        let b = export_fsid(&vc.name).into_bytes();
        let mut id = u16::from_be_bytes([b[0], b[1]]).max(1);
        for _ in 0..u16::MAX {
            if taken.insert(id) {
                break;
            }
            id = id.checked_add(1).unwrap_or(1);
        }
        ids.push((vc.name.as_str(), id));
    }
    ids
}

/// The nfs-ganesha `EXPORT` blocks of every VC (the user-space server a
/// blade runs where its kernel has no nfsd), the same exports as
/// [`exports`]: the VC's directory at the same path (its NFSv4 pseudo path
/// is its real path, so a guest mounts the same `ADDR:PATH` from either
/// server), read-write to its subnet only and to nobody else, NFSv4 only,
/// root squashed to nobody (65534, as the kernel's server), and a
/// `Filesystem_id` from its [`export_fsid`].
pub fn ganesha_exports(plan: &NetPlan) -> String {
    let mut s = String::from(
        "# vlx: VC shared directories for nfs-ganesha (rendered from the VC state; do not edit)\n",
    );
    for (vc, (name, id)) in plan.vcs.iter().zip(export_ids(plan)) {
        let dir = vc_dir(plan, name);
        let b = export_fsid(name).into_bytes();
        let major = u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
        let minor = u64::from_be_bytes([b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]]);
        let _ = write!(
            s,
            "\n# VC {name} ({subnet})\nEXPORT {{\n\tExport_Id = {id};\n\tPath = \"{dir}\";\n\tPseudo = \"{dir}\";\n\
             \tProtocols = 4;\n\tTransports = TCP;\n\tSecType = sys;\n\tSquash = root_squash;\n\
             \tAnonymous_Uid = 65534;\n\tAnonymous_Gid = 65534;\n\tFilesystem_id = {major}.{minor};\n\
             \t# Nobody but the VC's subnet.\n\tAccess_Type = None;\n\tFSAL {{\n\t\tName = VFS;\n\t}}\n\
             \tCLIENT {{\n\t\tClients = {subnet};\n\t\tAccess_Type = RW;\n\t\tProtocols = 4;\n\t}}\n}}\n",
            subnet = vc.subnet,
        );
    }
    s
}

/// Where a blade's nfs-ganesha keeps the NFSv4 client records it needs for
/// its grace period after a restart.
pub const GANESHA_RECOVERY: &str = "/var/lib/nfs/ganesha";

/// nfs-ganesha's main config for VC shares: NFSv4 over TCP only (no
/// rpcbind, no NLM, no rquota: NFSv4 needs none of them), its recovery
/// records under `recovery`, and the VCs' exports from `exports_file` (the
/// blade's copy of [`ganesha_exports`], re-read on SIGHUP). The lease is
/// 15 s and the grace period 20 s (ganesha's defaults are 60 s and 90 s):
/// after the storage address moves, the VMs' clients reclaim their state
/// within those, and new opens wait at most that long.
pub fn ganesha_conf(exports_file: &str, recovery: &str) -> String {
    format!(
        "# vlx: nfs-ganesha for VC shared directories (rendered; do not edit)\n\
         NFS_CORE_PARAM {{\n\tProtocols = 4;\n\tNFS_Port = {NFS_PORT};\n\tEnable_NLM = false;\n\
         \tEnable_RQUOTA = false;\n\tEnable_UDP = false;\n}}\n\
         NFSV4 {{\n\tLease_Lifetime = 15;\n\tGrace_Period = 20;\n\tRecoveryBackend = fs;\n\
         \tRecoveryRoot = \"{recovery}\";\n}}\n\
         NFS_KRB5 {{\n\tActive_krb5 = false;\n}}\n\
         %include \"{exports_file}\"\n"
    )
}

/// The `/etc/fstab` line a VM of `vc` mounts its shared directory with.
pub fn guest_fstab(plan: &NetPlan, vc: &str) -> String {
    format!(
        "{}\t{GUEST_SHARED_MOUNT}\tnfs4\trw,hard,_netdev\t0\t0\n",
        share_source(plan.storage, &plan.shared_dir, vc)
    )
}

/// Every VM name with its address, `/etc/hosts` style, for the blades'
/// own resolver (`addn-hosts=` of the cluster's dnsmasq).
pub fn hosts(plan: &NetPlan) -> String {
    let mut s = String::new();
    for vc in &plan.vcs {
        for vm in &vc.vms {
            let _ = writeln!(s, "{}\t{}", vm.addr, fqdn(plan, &vc.name, &vm.name));
        }
    }
    s
}

/// The gateway a local VM's tap carries, with its prefix (added with
/// `noprefixroute`, so that taps of one VC do not claim the whole subnet).
pub fn tap_addr(gateway: Ipv4Addr, prefix: u8) -> String {
    format!("{gateway}/{prefix}")
}

//! The iSCSI root in every spelling the node agent reads: each line of
//! the tables is what an administrator would type, and what the agent must
//! make of it (or the reason it refuses). The property tests feed the
//! parser anything and what the writers write.

#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr};

use contracts::cmdline::iscsi::{
    Address, IscsiBoot, Login, Net, Portal, RootPath, Target, is_secret,
};
use contracts::cmdline::node::{self, CmdlineError, Iscsi, SanBoot, Transport};
use proptest::prelude::*;
use uuid::Uuid;

const U: &str = "6f1c0a4e-3b8e-4d3a-9d2a-1f0e5c7b9a10";
const IQN: &str = "iqn.2007-01.it.unipi.di:virtualinux.san0";

fn v4(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

/// The seed's boot: 10.10.0.250:3260, eth1 by DHCP, LUN 0, group 1.
fn seed() -> IscsiBoot {
    IscsiBoot {
        net: Net {
            iface: Some("eth1".into()),
            address: Address::Dhcp,
        },
        nic_modules: vec![],
        login: Login::Target(Target {
            portal: Portal {
                addr: IpAddr::V4(v4("10.10.0.250")),
                port: 3260,
            },
            name: IQN.into(),
            lun: 0,
            tpgt: 1,
            initiator: None,
        }),
    }
}

fn with(f: impl FnOnce(&mut IscsiBoot)) -> IscsiBoot {
    let mut b = seed();
    f(&mut b);
    b
}

fn target(b: &mut IscsiBoot) -> &mut Target {
    match &mut b.login {
        Login::Target(t) => t,
        Login::Firmware => unreachable!(),
    }
}

fn iscsi_of(line: &str) -> Result<IscsiBoot, CmdlineError> {
    match node::parse(&format!("vlx.cluster={U} {line}"))?.san {
        SanBoot::Iscsi(b) => Ok(b),
        SanBoot::Disk => panic!("{line}: read as a disk"),
    }
}

#[test]
fn every_spelling_reads_as_the_same_boot() {
    let seed_line = format!(
        "vlx.san=iscsi vlx.storage_ip=10.10.0.250 vlx.sif=eth1 vlx.sifip=dhcp vlx.ivid={IQN}"
    );
    let cases: Vec<(String, IscsiBoot)> = vec![
        (seed_line.clone(), seed()),
        // dracut: netroot (RFC 4173) and ip=<iface>:dhcp.
        (
            format!("ip=eth1:dhcp netroot=iscsi:10.10.0.250::::{IQN}"),
            seed(),
        ),
        // RFC 4173 with root=, protocol 6 and the port written out.
        (
            format!("ip=eth1:dhcp root=iscsi:10.10.0.250:6:3260:0:{IQN}"),
            seed(),
        ),
        // dracut's rd.iscsi.* one by one.
        (
            format!(
                "ip=eth1:dhcp rd.iscsi.target.ip=10.10.0.250 rd.iscsi.target.port=3260 \
                 rd.iscsi.target.name={IQN} rd.iscsi.target.group=1"
            ),
            seed(),
        ),
        // Debian initramfs-tools.
        (
            format!(
                "ip=:::::eth1:dhcp iscsi_target_ip=10.10.0.250 iscsi_target_name={IQN} \
                 iscsi_target_port=3260 iscsi_target_group=1"
            ),
            seed(),
        ),
        // A fixed address in the kernel's ip= form; another port, LUN 0x1a,
        // group 2 and the initiator named on the line.
        (
            format!(
                "ip=10.10.0.7::10.10.0.1:255.255.255.0:blade7:eth1:none \
                 root=iscsi:10.10.0.250::3261:1a:{IQN} rd.iscsi.target.group=2 \
                 rd.iscsi.initiator=iqn.2026-01.org.example:blade7"
            ),
            with(|b| {
                b.net.address = Address::Static {
                    addr: v4("10.10.0.7"),
                    netmask: Some(v4("255.255.255.0")),
                    gateway: Some(v4("10.10.0.1")),
                };
                let t = target(b);
                t.portal.port = 3261;
                t.lun = 0x1a;
                t.tpgt = 2;
                t.initiator = Some("iqn.2026-01.org.example:blade7".into());
            }),
        ),
        // An IPv6 portal in RFC 4173's brackets; ip=dhcp names no interface.
        (
            format!("ip=dhcp netroot=iscsi:[2001:db8::fa]::::{IQN}"),
            with(|b| {
                b.net.iface = None;
                target(b).portal.addr = "2001:db8::fa".parse().unwrap();
            }),
        ),
        // The last word wins, whatever its spelling: a typed vlx.storage_ip
        // after the stored netroot, then iscsi_target_port after both.
        (
            format!(
                "ip=eth1:dhcp netroot=iscsi:10.0.0.1::::{IQN} vlx.storage_ip=10.10.0.250 \
                 iscsi_target_port=3262"
            ),
            with(|b| target(b).portal.port = 3262),
        ),
        (
            format!("{seed_line} vlx.sifm=mlx4_core,mlx4_ib rd.driver.pre=bnx2x"),
            with(|b| b.nic_modules = vec!["mlx4_core".into(), "mlx4_ib".into()]),
        ),
        // The firmware's table: target, CHAP and NIC from the iBFT.
        (
            "rd.iscsi.firmware=1".into(),
            IscsiBoot {
                net: Net {
                    iface: None,
                    address: Address::Firmware,
                },
                nic_modules: vec![],
                login: Login::Firmware,
            },
        ),
        (
            "iscsi_auto ip=ibft".into(),
            IscsiBoot {
                net: Net {
                    iface: None,
                    address: Address::Firmware,
                },
                nic_modules: vec![],
                login: Login::Firmware,
            },
        ),
        // The firmware names the target, the line the interface.
        (
            "rd.iscsi.ibft vlx.sif=eth1".into(),
            IscsiBoot {
                net: Net {
                    iface: Some("eth1".into()),
                    address: Address::Dhcp,
                },
                nic_modules: vec![],
                login: Login::Firmware,
            },
        ),
        // rd.iscsi.firmware=0 turns a stored =1 off again.
        (
            format!("rd.iscsi.firmware=1 {seed_line} rd.iscsi.firmware=0"),
            seed(),
        ),
    ];
    for (line, want) in cases {
        assert_eq!(iscsi_of(&line), Ok(want), "{line}");
    }
}

#[test]
fn rd_driver_pre_adds_up_for_either_transport() {
    let args = node::parse(&format!(
        "vlx.cluster={U} vlx.san=disk rd.driver.pre=mpt3sas rd.driver.pre=lpfc,qla2xxx ip=dhcp"
    ))
    .unwrap();
    assert_eq!(args.san, SanBoot::Disk);
    assert_eq!(args.pre_modules, ["mpt3sas", "lpfc", "qla2xxx"]);
}

#[test]
fn words_of_other_owners_are_not_ours() {
    // A module's parameter, an NFS root and root=/dev/...: not iSCSI.
    let args = node::parse(&format!(
        "vlx.cluster={U} vlx.san=disk iscsi_tcp.max_lun=4 netroot=nfs:10.0.0.1:/x root=/dev/sda1"
    ))
    .unwrap();
    assert_eq!(args.san, SanBoot::Disk);
}

#[test]
fn refusals_name_the_word_and_the_reason() {
    let cases: Vec<(String, &str)> = vec![
        (
            format!("vlx.san=disk netroot=iscsi:10.0.0.1::::{IQN}"),
            "netroot=iscsi:10.0.0.1::::iqn.2007-01.it.unipi.di:virtualinux.san0 is an iSCSI \
             parameter, but the command line says vlx.san=disk",
        ),
        (
            "vlx.san=disk rd.iscsi.firmware=1".into(),
            "rd.iscsi.firmware=1 is an iSCSI parameter",
        ),
        ("ip=eth0:dhcp".into(), "no vlx.san=disk or vlx.san=iscsi"),
        (
            format!("ip=eth0:dhcp rd.iscsi.target.name={IQN}"),
            "needs the target's address",
        ),
        (
            "ip=eth0:dhcp rd.iscsi.target.ip=10.0.0.1".into(),
            "needs the target's name",
        ),
        (
            format!("netroot=iscsi:10.0.0.1::::{IQN}"),
            "needs the storage interface",
        ),
        (
            format!("rd.iscsi.firmware=1 netroot=iscsi:10.0.0.1::::{IQN}"),
            "netroot=iscsi:10.0.0.1::::iqn.2007-01.it.unipi.di:virtualinux.san0 names a target, \
             but the command line also says to take it from the firmware",
        ),
        (
            "rd.iscsi.firmware=maybe".into(),
            "rd.iscsi.firmware=maybe on the kernel command line: write 1 or 0",
        ),
        (
            "rd.iscsi.target.ip=san.example rd.iscsi.firmware".into(),
            "rd.iscsi.target.ip=san.example on the kernel command line: not an IP address",
        ),
        (
            "iscsi_target_port=0 iscsi_auto".into(),
            "iscsi_target_port=0 on the kernel command line: 0 is not a port",
        ),
        (
            "rd.iscsi.mp=1 rd.iscsi.firmware".into(),
            "rd.iscsi.mp on the kernel command line is not an iSCSI parameter vlx reads",
        ),
        (
            "iscsi_target_lun=1 iscsi_auto".into(),
            "iscsi_target_lun on the kernel command line is not an iSCSI parameter",
        ),
        (
            format!("ip=eth1:dhcp netroot=iscsi:10.0.0.1:17:::{IQN}"),
            "protocol 17 is not TCP",
        ),
        ("ip=dhcp6 rd.iscsi.firmware".into(), "takes IPv4"),
        (
            "ip=eth0:dhcp rd.driver.pre=a,,b rd.iscsi.firmware".into(),
            "rd.driver.pre=a,,b on the kernel command line: write module names",
        ),
    ];
    for (line, want) in cases {
        let err = node::parse(&format!("vlx.cluster={U} {line}"))
            .expect_err(&line)
            .to_string();
        assert!(err.contains(want), "{line}:\n  got  {err}\n  want {want}");
    }
}

#[test]
fn chap_on_the_command_line_is_refused_without_repeating_it() {
    for word in [
        "rd.iscsi.username=blade",
        "rd.iscsi.password=s3cr3t-PW",
        "rd.iscsi.in.username=san",
        "rd.iscsi.in.password=s3cr3t-PW",
        "iscsi_username=blade",
        "iscsi_password=s3cr3t-PW",
        "iscsi_in_username=san",
        "iscsi_in_password=s3cr3t-PW",
    ] {
        let line = format!("vlx.cluster={U} rd.iscsi.firmware=1 {word}");
        let err = node::parse(&line).expect_err(&line);
        let key = word.split_once('=').unwrap().0;
        assert_eq!(err, CmdlineError::Secret(key.into()), "{word}");
        let text = err.to_string();
        assert!(text.contains("rd.iscsi.firmware=1"), "{text}");
        let value = word.split_once('=').unwrap().1;
        assert!(
            !text.contains(value),
            "{word}: the error repeats it: {text}"
        );
    }
    for word in [
        format!("root=iscsi:blade:s3cr3t-PW@10.0.0.1::::{IQN}"),
        format!("netroot=iscsi:blade:s3cr3t-PW:san:s3cr3t-PW@10.0.0.1::::{IQN}"),
    ] {
        let line = format!("vlx.cluster={U} ip=eth0:dhcp {word}");
        let err = node::parse(&line).expect_err(&line).to_string();
        assert!(err.contains("CHAP credentials do not go"), "{err}");
        assert!(!err.contains("s3cr3t-PW"), "the error repeats it: {err}");
    }
}

#[test]
fn what_the_installer_writes_reads_back_and_holds_no_secret() {
    let t = Transport::Iscsi(Iscsi {
        storage_ip: v4("10.10.0.250"),
        storage_port: 3260,
        sif: "eth1".into(),
        sifip: "dhcp".into(),
        sifnm: None,
        sifm: vec![],
        ivid: IQN.into(),
    });
    let uuid = Uuid::parse_str(U).unwrap();
    let words = node::write(uuid, &t);
    assert!(!words.iter().any(|w| is_secret(w)), "{words:?}");
    let back = node::parse(&words.join(" ")).unwrap();
    assert_eq!(back.san, SanBoot::Iscsi(seed()));
}

fn arb_iface() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9]{0,14}"
}

fn arb_iscsi() -> impl Strategy<Value = Iscsi> {
    (
        any::<[u8; 4]>(),
        1u16..,
        arb_iface(),
        prop_oneof![
            Just("dhcp".to_owned()),
            any::<[u8; 4]>().prop_map(|a| Ipv4Addr::from(a).to_string())
        ],
        proptest::option::of(any::<[u8; 4]>()),
        proptest::collection::vec("[a-z][a-z0-9_]{0,12}", 0..3),
        "iqn\\.[0-9]{4}-[0-9]{2}\\.[a-z.]{1,12}(:[a-z0-9.-]{1,12})?",
    )
        .prop_map(|(ip, port, sif, sifip, nm, sifm, ivid)| Iscsi {
            storage_ip: Ipv4Addr::from(ip),
            storage_port: port,
            sif,
            sifip,
            sifnm: nm.map(Ipv4Addr::from),
            sifm,
            ivid,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// No line, however odd, makes the parser panic.
    #[test]
    fn any_line_parses_or_says_why(line in "\\PC{0,200}") {
        let _ = node::parse(&line);
    }

    /// Lines made of the words we read, in any order and with any values.
    #[test]
    fn any_mix_of_our_words_parses_or_says_why(
        words in proptest::collection::vec(
            (
                prop_oneof![
                    Just("vlx.cluster"), Just("vlx.san"), Just("vlx.storage_ip"),
                    Just("vlx.sif"), Just("vlx.sifip"), Just("vlx.ivid"), Just("ip"),
                    Just("root"), Just("netroot"), Just("rd.iscsi.target.ip"),
                    Just("rd.iscsi.firmware"), Just("iscsi_target_name"),
                    Just("rd.driver.pre"), Just("iscsi_auto"), Just("rd.iscsi.password"),
                ],
                "[-a-z0-9.:\\[\\]@,]{0,40}",
            ),
            0..12,
        )
    ) {
        let line: Vec<String> = words.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let line = line.join(" ");
        if let Err(e) = node::parse(&line) {
            // A refusal of a secret never repeats the secret's value.
            if let CmdlineError::Secret(_) = e {
                for (k, v) in &words {
                    if k.contains("password") && v.len() > 3 {
                        prop_assert!(!e.to_string().contains(v.as_str()));
                    }
                }
            }
        }
    }

    /// What the installer writes reads back as the same boot.
    #[test]
    fn the_writer_round_trips(i in arb_iscsi(), uuid in any::<[u8; 16]>()) {
        let uuid = Uuid::from_bytes(uuid);
        let t = Transport::Iscsi(i);
        let line = format!("quiet {} console=ttyS0", node::write(uuid, &t).join(" "));
        let back = node::parse(&line).unwrap();
        prop_assert_eq!(back.cluster, uuid);
        prop_assert_eq!(back.san, SanBoot::from(&t));
    }

    /// A root path reads back as itself, and as the same target on a line.
    #[test]
    fn root_paths_round_trip(
        v6 in any::<bool>(), a in any::<[u8; 16]>(), port in proptest::option::of(1u16..),
        lun in any::<u16>(), target in "iqn\\.[0-9]{4}-[0-9]{2}\\.[a-z]{1,8}(:[a-z0-9:.-]{1,16})?",
    ) {
        let server = if v6 {
            IpAddr::from(a)
        } else {
            IpAddr::from([a[0], a[1], a[2], a[3]])
        };
        let p = RootPath { server, port, lun, target };
        let text = p.to_string();
        prop_assert_eq!(text.parse::<RootPath>(), Ok(p.clone()));
        let b = iscsi_of(&format!("ip=eth0:dhcp netroot={text}")).unwrap();
        let Login::Target(t) = b.login else { panic!("{text}: firmware") };
        prop_assert_eq!(t.portal, Portal { addr: server, port: port.unwrap_or(3260) });
        prop_assert_eq!(t.lun, lun);
        prop_assert_eq!(t.name, p.target);
    }
}

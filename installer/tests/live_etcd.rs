//! etcd on the demo cluster, live: every blade gets a network namespace on
//! one private bridge with its address from the plan, each voter runs
//! Debian's etcd through the rendered `etcd-start` and `/etc/default/etcd`
//! (bound over the host's, with a data directory of its own bound over
//! `/var/lib/etcd`, in the namespace's private mounts) as the etcd user, as
//! Debian's unit runs it, and etcd's own
//! `etcdctl` judges the cluster: one member list, a put on one voter read
//! on another, and the client blade's `/etc/vlx/etcd.conf` endpoints
//! answering. Then a voter is killed, its data wiped (what `reset-node`
//! does to its snapshot root) and started again by the same script: it must
//! rejoin as a new member on its own.
//!
//! Needs root (namespaces, bind mounts), `etcd-server` and `etcd-client`.
#![allow(clippy::unwrap_used)] // helpers outside #[test] fns panic by design

mod nodes;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use cluster::plan::Plan;
use nodes::lab::{Lab, wait_until};
use nodes::{plan, write_all};

/// Generous: members elect a leader within a few election timeouts.
const READY: Duration = Duration::from_secs(60);
/// How long every node's `etcd-follow` may take: a new member joins, then
/// the former ones are removed (it gives up by itself after about 150
/// rounds of a second and an `etcdctl` call).
const FOLLOW: Duration = Duration::from_secs(600);

/// A member as `etcdctl member list -w json` prints it.
#[derive(Debug, serde::Deserialize)]
struct Member {
    #[serde(rename = "ID")]
    id: u64,
    #[serde(default)]
    name: String,
    #[serde(rename = "peerURLs", default)]
    peer_urls: Vec<String>,
    #[serde(rename = "clientURLs", default)]
    client_urls: Vec<String>,
}

#[derive(Debug, serde::Deserialize)]
struct MemberList {
    members: Vec<Member>,
}

struct Etcd {
    lab: Lab,
    plan: Plan,
    roots: Vec<(String, PathBuf)>,
    /// The voters' `etcd-start` processes, by name.
    running: Vec<(String, Child)>,
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let ours: Vec<String> = self
            .running
            .iter()
            .map(|(_, c)| c.id().to_string())
            .collect();
        for (_, c) in &mut self.running {
            let _ = c.kill();
            let _ = c.wait();
        }
        // Members that etcd-follow started, by the pid files it wrote (and
        // only while that pid is still an etcd).
        for n in &self.plan.nodes {
            let file = self.run_dir(n.name.as_str()).join("etcd.pid");
            let Ok(pid) = std::fs::read_to_string(file) else {
                continue;
            };
            let pid = pid.trim();
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let etcd = cmdline.windows(4).any(|w| w == b"etcd");
            if !ours.iter().any(|o| o == pid) && etcd {
                let _ = Command::new("kill").args(["-KILL", pid]).status();
            }
        }
    }
}

impl Etcd {
    /// The demo cluster; `tag` keeps concurrent tests' namespaces apart.
    fn new(tag: &str) -> Etcd {
        Etcd::with(plan("demo.toml"), tag)
    }

    fn with(plan: Plan, tag: &str) -> Etcd {
        for tool in ["etcd", "etcdctl"] {
            let found = Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .status()
                .unwrap()
                .success();
            assert!(
                found,
                "{tool} is missing: install etcd-server and etcd-client (cargo xtask deps)"
            );
        }
        let lab = Lab::new(tag);
        let roots = write_all(&plan, &lab.dir.path().join("roots"));
        let mut e = Etcd {
            lab,
            plan,
            roots,
            running: Vec::new(),
        };
        e.add_hosts();
        e
    }

    /// A namespace with its planned address for every node of the plan
    /// that has none yet.
    fn add_hosts(&mut self) {
        let prefix = self.plan.network.cidr.prefix();
        for n in &self.plan.nodes {
            let name = n.name.as_str();
            if self.lab.has_host(name) {
                continue;
            }
            let ns = self.lab.add_host(name, &n.macs[0].to_string());
            let addr = format!("{}/{prefix}", n.ip);
            nodes::run_ok(
                Command::new("ip").args(["-n", &ns, "addr", "add", &addr, "dev", "eth0"]),
            );
            nodes::run_ok(Command::new("ip").args(["-n", &ns, "link", "set", "eth0", "up"]));
        }
    }

    /// The cluster changes to `plan` (a day-2 apply): every node's rendered
    /// files become the new plan's, as `follow` places them; new nodes get
    /// their namespaces. Running members keep running.
    fn change(&mut self, plan: Plan) {
        let dir = self
            .lab
            .dir
            .path()
            .join(format!("roots-{}", plan.nodes.len()));
        self.roots = write_all(&plan, &dir);
        self.plan = plan;
        self.add_hosts();
    }

    fn root(&self, name: &str) -> &Path {
        &self.roots.iter().find(|(n, _)| n == name).unwrap().1
    }

    fn data(&self, name: &str) -> PathBuf {
        self.lab.dir.path().join("data").join(name)
    }

    /// Starts `name`'s rendered `etcd-start` in its namespace, its rendered
    /// defaults and its own data directory bound where the script and etcd
    /// look for them; as the etcd user, as Debian's unit runs it (the
    /// script is read from its standard input: the user cannot reach the
    /// lab's private folder).
    fn start(&mut self, name: &str) {
        let root = self.root(name).to_owned();
        let data = self.data(name);
        std::fs::create_dir_all(&data).unwrap();
        let st = Command::new("chown")
            .arg("etcd:etcd")
            .arg(&data)
            .status()
            .unwrap();
        assert!(st.success(), "chown etcd:etcd {}", data.display());
        let script = format!(
            "mount --bind '{defaults}' /etc/default/etcd && mount --bind '{data}' /var/lib/etcd && \
             exec setpriv --reuid=etcd --regid=etcd --init-groups /bin/sh -s < '{start}'",
            defaults = root.join("etc/default/etcd").display(),
            data = data.display(),
            start = root.join("usr/lib/vlx/etcd-start").display(),
        );
        let log = self
            .lab
            .dir
            .path()
            .join(format!("etcd-{name}-{}.log", self.running.len()));
        let file = std::fs::File::create(&log).unwrap();
        let mut cmd = self.lab.cmd(name, "sh");
        cmd.args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file);
        let child = cmd.spawn().unwrap();
        // Where the tiny image's rcS keeps it (`ip netns exec`, `sh` and
        // `etcd-start` each exec the next: the pid is etcd's).
        let run = self.run_dir(name);
        std::fs::create_dir_all(&run).unwrap();
        std::fs::write(run.join("etcd.pid"), child.id().to_string()).unwrap();
        self.running.push((name.to_owned(), child));
    }

    /// `name`'s `/run/vlx` (`VLX_RUN`): etcd's pid file.
    fn run_dir(&self, name: &str) -> PathBuf {
        self.lab.dir.path().join("run").join(name)
    }

    /// Runs every node's rendered `etcd-follow` at once in its namespace
    /// (its rendered defaults and data directory bound as in `start`), as
    /// `follow` does on every blade after a change of the cluster, and
    /// waits for all of them; returns each node's exit code and what it
    /// said. A member it starts is left running (and killed on drop).
    fn follow_all(&mut self) -> Vec<(String, Option<i32>, String)> {
        let mut children = Vec::new();
        for n in &self.plan.nodes {
            let name = n.name.to_string();
            let root = self.root(&name).to_owned();
            let data = self.data(&name);
            std::fs::create_dir_all(&data).unwrap();
            std::fs::create_dir_all(self.run_dir(&name)).unwrap();
            let script = format!(
                "mount --bind '{defaults}' /etc/default/etcd && mount --bind '{data}' /var/lib/etcd && exec '{follow}'",
                defaults = root.join("etc/default/etcd").display(),
                data = data.display(),
                follow = root.join("usr/lib/vlx/etcd-follow").display(),
            );
            // A file, not a pipe: a member it starts keeps its output open.
            let log = self.lab.dir.path().join(format!("follow-{name}.log"));
            let file = std::fs::File::create(&log).unwrap();
            let mut cmd = self.lab.cmd(&name, "sh");
            cmd.args(["-c", &script])
                .env("VLX_RUN", self.run_dir(&name))
                .env("VLX_INIT", "busybox")
                .env("VLX_ETCD_FOLLOW_PAUSE", "1")
                .stdin(Stdio::null())
                .stdout(file.try_clone().unwrap())
                .stderr(file);
            children.push((name, cmd.spawn().unwrap(), log));
        }
        let mut done = Vec::new();
        for (name, mut child, log) in children {
            let status = wait_until(FOLLOW, || child.try_wait().unwrap().is_some());
            if status.is_none() {
                let _ = child.kill();
            }
            let code = child.wait().unwrap().code();
            let said = std::fs::read_to_string(&log).unwrap();
            assert!(
                status.is_some(),
                "etcd-follow on {name} did not end within {FOLLOW:?}:\n{said}"
            );
            done.push((name, code, said));
        }
        done
    }

    /// Kills `name`'s member (SIGKILL: a blade that dies).
    fn kill(&mut self, name: &str) {
        let at = self.running.iter().position(|(n, _)| n == name).unwrap();
        let (_, mut child) = self.running.remove(at);
        child.kill().unwrap();
        child.wait().unwrap();
        let _ = std::fs::remove_file(self.run_dir(name).join("etcd.pid"));
    }

    fn log(&self, name: &str) -> String {
        let mut out = String::new();
        for k in 0..8 {
            let p = self.lab.dir.path().join(format!("etcd-{name}-{k}.log"));
            if let Ok(t) = std::fs::read_to_string(&p) {
                out.push_str(&format!("--- {}\n{t}", p.display()));
            }
        }
        out
    }

    /// `etcdctl` run in `host`'s namespace against `endpoints`.
    fn ctl(&self, host: &str, endpoints: &[String], args: &[&str]) -> Output {
        let mut cmd = self.lab.cmd(host, "etcdctl");
        cmd.arg(format!("--endpoints={}", endpoints.join(",")))
            .args(["--dial-timeout=2s", "--command-timeout=5s"])
            .args(args);
        cmd.output().unwrap()
    }

    fn members(&self, host: &str) -> Option<Vec<Member>> {
        let out = self.ctl(
            host,
            &self.plan.etcd.endpoints(),
            &["member", "list", "-w", "json"],
        );
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice::<MemberList>(&out.stdout)
            .ok()
            .map(|l| l.members)
    }

    /// True when every voter of the plan is a started member (a name and
    /// a client URL) at its planned URLs, and nothing else is.
    fn whole(&self, host: &str) -> bool {
        let Some(mut members) = self.members(host) else {
            return false;
        };
        members.sort_by(|a, b| a.name.cmp(&b.name));
        members.len() == self.plan.etcd.voters.len()
            && members.iter().zip(&self.plan.etcd.voters).all(|(m, v)| {
                m.name == v.name.as_str()
                    && m.peer_urls == [v.peer_url.clone()]
                    && m.client_urls == [v.client_url.clone()]
            })
    }

    /// Each endpoint on its own says it is healthy (it has a leader and
    /// commits).
    fn healthy(&self, host: &str, endpoints: &[String]) -> bool {
        endpoints.iter().all(|e| {
            self.ctl(host, std::slice::from_ref(e), &["endpoint", "health"])
                .status
                .success()
        })
    }

    fn get(&self, host: &str, endpoint: &str, key: &str) -> String {
        let out = self.ctl(
            host,
            &[endpoint.to_owned()],
            &["get", "--print-value-only", key],
        );
        assert!(out.status.success(), "get {key} on {endpoint}: {out:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    fn put(&self, host: &str, endpoint: &str, key: &str, value: &str) {
        let out = self.ctl(host, &[endpoint.to_owned()], &["put", key, value]);
        assert!(out.status.success(), "put {key} on {endpoint}: {out:?}");
    }
}

#[test]
fn live_etcd_voters_form_one_cluster_and_a_reset_voter_rejoins() {
    let mut e = Etcd::new("etcd");
    let voters: Vec<String> = e
        .plan
        .etcd
        .voters
        .iter()
        .map(|v| v.name.to_string())
        .collect();
    let client = e
        .plan
        .nodes
        .iter()
        .map(|n| n.name.to_string())
        .find(|n| !voters.contains(n))
        .expect("the demo cluster has a blade that does not vote");
    assert_eq!(voters, ["blade01", "blade02", "blade03"]);

    // The client's etcd-start runs no member, and says so.
    let out = e
        .lab
        .cmd(&client, "sh")
        .arg("-c")
        .arg(format!(
            "mount --bind '{}' /etc/default/etcd && exec '{}'",
            e.root(&client).join("etc/default/etcd").display(),
            e.root(&client).join("usr/lib/vlx/etcd-start").display()
        ))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is not a voter"),
        "{out:?}"
    );

    // Two voters make a quorum; the third is late to the first boot (a
    // blade powered on later): it must come in as the member the initial
    // cluster planned for it, not remove and add itself.
    for v in &voters[..2] {
        e.start(v);
    }
    let quorum = wait_until(READY, || e.members(&client).is_some());
    assert!(
        quorum.is_some(),
        "{voters:?}: the first two made no quorum\n{}",
        voters.iter().map(|v| e.log(v)).collect::<String>()
    );
    let planned = e
        .members(&client)
        .unwrap()
        .into_iter()
        .find(|m| m.peer_urls == [e.plan.etcd.voters[2].peer_url.clone()])
        .expect("the late voter's planned member is listed");
    assert!(planned.client_urls.is_empty(), "{planned:?} ran already");
    e.start(&voters[2]);
    let formed = wait_until(READY, || e.whole(&client));
    assert!(
        formed.is_some(),
        "no cluster of {voters:?}; members: {:?}\n{}",
        e.members(&client),
        voters.iter().map(|v| e.log(v)).collect::<String>()
    );
    let late = e.log(&voters[2]);
    assert!(
        late.contains(&format!(
            "late to the cluster's first boot: starting as its planned member {:x}",
            planned.id
        )) && !late.contains("removing it"),
        "{late}"
    );
    assert!(
        e.members(&client)
            .unwrap()
            .iter()
            .any(|m| m.id == planned.id && m.name == voters[2]),
        "{:?}",
        e.members(&client)
    );

    // etcd runs with the 1 ms timer slack etcd-start gives it.
    for (name, child) in &e.running {
        let pid = child.id();
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        let slack =
            std::fs::read_to_string(format!("/proc/{pid}/timerslack_ns")).unwrap_or_default();
        assert_eq!(
            (comm.trim(), slack.trim()),
            ("etcd", "1000000"),
            "{name}'s etcd"
        );
    }

    // A write on one voter is read on another.
    let urls: Vec<String> = e.plan.etcd.endpoints();
    e.put(&client, &urls[0], "/vlx/test/k", "from-blade01");
    assert_eq!(e.get(&client, &urls[2], "/vlx/test/k"), "from-blade01");

    // The client's /etc/vlx/etcd.conf, read as vlx-vc reads it.
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Conf {
        endpoints: Vec<String>,
    }
    let conf = std::fs::read_to_string(e.root(&client).join("etc/vlx/etcd.conf")).unwrap();
    let conf: Conf = toml::from_str(&conf).unwrap();
    assert_eq!(conf.endpoints.len(), 3);
    assert!(
        e.healthy(&client, &conf.endpoints),
        "{:?} do not all answer",
        conf.endpoints
    );

    // blade02 dies and comes back with an empty data directory.
    let before = e.members(&client).unwrap();
    let old = before.iter().find(|m| m.name == "blade02").unwrap().id;
    e.kill("blade02");
    let data = e.data("blade02");
    std::fs::remove_dir_all(&data).unwrap();
    e.start("blade02");
    let rejoined = wait_until(READY, || {
        e.whole(&client)
            && e.members(&client)
                .is_some_and(|m| m.iter().any(|m| m.name == "blade02" && m.id != old))
            && e.healthy(&client, &urls)
    });
    assert!(
        rejoined.is_some(),
        "blade02 did not rejoin; members: {:?}\n{}",
        e.members(&client),
        e.log("blade02")
    );
    let said = e.log("blade02");
    assert!(
        said.contains("removing it") && said.contains("rejoining as a new member"),
        "{said}"
    );
    // It caught up with what was written before it was lost.
    assert_eq!(e.get(&client, &urls[1], "/vlx/test/k"), "from-blade01");
    assert!(data.join("member").is_dir());
}

/// The demo cluster with a fifth blade: what `vlx-install change` would
/// apply (the plan of a copy of `demo.toml`, its relative paths made
/// absolute).
fn demo_with_five_blades(dir: &Path) -> Plan {
    let profiles = nodes::profiles_dir().canonicalize().unwrap();
    let text = std::fs::read_to_string(profiles.join("demo.toml")).unwrap();
    let range = "name = \"blade[01-04]\"";
    assert!(text.contains(range), "demo.toml's blades changed");
    let text = text
        .replace(range, "name = \"blade[01-05]\"")
        .replace(
            "\"../hosts/tiny.toml\"",
            &format!("{:?}", profiles.join("../hosts/tiny.toml")),
        )
        .replace(
            "\"../../overlays/node\"",
            &format!("{:?}", profiles.join("../../overlays/node")),
        );
    let path = dir.join("demo-5.toml");
    std::fs::write(&path, text).unwrap();
    installer::prepare::plan_profile(&path, cluster::SanFacts::default())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .plan
}

/// A change of the voters (the fresh plan of five blades: blade01, blade02
/// and blade04 vote instead of blade01 to blade03, as when blade03 is
/// removed and replaced, or the cluster is planned anew): every node's
/// `etcd-follow`
/// starts the new voter's member, which joins; the voters then remove the
/// former one, which stops its member and empties its data. etcd's own
/// member list must be the new plan's voters and nothing else, and what was
/// written before is read through the new voter.
#[test]
fn live_etcd_a_change_of_voters_adds_the_new_and_removes_the_former() {
    let mut e = Etcd::new("etcdmv");
    let names =
        |p: &Plan| -> Vec<String> { p.etcd.voters.iter().map(|v| v.name.to_string()).collect() };
    let before = names(&e.plan);
    assert_eq!(before, ["blade01", "blade02", "blade03"]);
    for v in &before {
        e.start(v);
    }
    assert!(
        wait_until(READY, || e.whole("blade04")).is_some(),
        "no cluster of {before:?}; members: {:?}\n{}",
        e.members("blade04"),
        before.iter().map(|v| e.log(v)).collect::<String>()
    );
    let old_urls = e.plan.etcd.endpoints();
    e.put("blade04", &old_urls[0], "/vlx/test/k", "before-the-change");

    let next = demo_with_five_blades(e.lab.dir.path());
    assert_eq!(names(&next), ["blade01", "blade02", "blade04"]);
    e.change(next);
    let followed = e.follow_all();
    let said: String = followed
        .iter()
        .map(|(n, c, s)| format!("--- etcd-follow on {n} ({c:?})\n{s}"))
        .collect();
    for (name, code, _) in &followed {
        assert_eq!(*code, Some(0), "etcd-follow on {name}:\n{said}");
    }
    // whole(): exactly the new voters, each started at its planned URLs.
    assert!(
        e.whole("blade05"),
        "members after the change: {:?}\n{said}\n{}",
        e.members("blade05"),
        e.log("blade04")
    );
    let urls = e.plan.etcd.endpoints();
    assert!(
        e.healthy("blade05", &urls),
        "{urls:?} do not all answer\n{said}"
    );
    assert_eq!(
        e.get("blade05", &urls[2], "/vlx/test/k"),
        "before-the-change"
    );
    assert!(
        said.contains("removing member") && said.contains("its member was removed"),
        "{said}"
    );
    // The former voter's member is stopped and its data gone.
    assert!(!e.data("blade03").join("member").exists(), "{said}");
    let at = e.running.iter().position(|(n, _)| n == "blade03").unwrap();
    let stopped = wait_until(READY, || e.running[at].1.try_wait().unwrap().is_some());
    assert!(stopped.is_some(), "blade03's etcd still runs\n{said}");
}

//! Per-node files: the master-less service configurations rendered from the
//! profile's overlay folders, and the node's SSH host keys.
//!
//! Rendering is pure: [`NodeOverlays::render`] turns a plan and a node into
//! a list of [`templating::Entry`] values (path, content, mode, owner), the same
//! for the same inputs. Host keys are random by nature and come from
//! [`host_keys`], which the installer calls separately and [`merge`]s in;
//! keeping them apart keeps rendering reproducible and testable. The
//! installer writes the result under `/nodes/<name>/root/` on the meta
//! volume, never under the boot tree (`/tftp/`), which is served to anyone.
//!
//! The template context ([`Context`]) is documented key by key in
//! `overlays/README.md`.

mod context;
mod keys;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use cluster::plan::{NodePlan, Plan};
use serde::Serialize;
use templating::{Entry, Kind, Overlay, OverlayError};

pub use context::{
    Common, Context, DNSMASQ_LEASE_MAX, PREEMPT_DELAY, PlanContext, ULA_PREFIX_LEN, lease_max,
    ula_address, ula_prefix,
};
pub use keys::{KEY_TYPE, host_keys};

/// Where the node agent leaves the meta volume on a node's root.
pub const META_MOUNT: &str = contracts::names::meta::ON_NODE;
/// The PXE tree on a running node: dnsmasq's TFTP root and the HTTP
/// server's document root.
pub const TFTP_ROOT: &str = "/vlx/meta/tftp";
/// Where the VIP holder mounts the shared volume.
pub const SHARED_MOUNT: &str = "/vlx/shared";
/// The name the image's init gives the cluster NIC (found by its MAC), so
/// that keepalived and the scripts can name it before the node boots: the
/// kernel's own names depend on probe order and on udev.
pub const CLUSTER_IFACE: &str = "vlx0";
/// Port of the boot HTTP server on every node.
pub const HTTP_PORT: u16 = 80;
/// How many nodes peer with each other for time; see
/// `overlays/README.md` ("Time") for why the set is bounded.
pub const NTP_CORE: usize = 16;
/// resolv.conf uses at most three name servers (glibc's MAXNS).
pub const RESOLVERS: usize = 3;

/// The PXE boot tree's file names, as dnsmasq hands them to clients: those
/// of the tree `bootfs` lays out under `/tftp/` on the meta volume
/// ([`bootfs::pxe::DHCP_BOOT`]), so the two cannot drift apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PxeFiles {
    /// iPXE script, fetched over HTTP by clients that already run iPXE.
    pub ipxe_script: &'static str,
    /// BIOS PXE clients without iPXE get iPXE first, over TFTP.
    pub bios_ipxe: &'static str,
    /// UEFI x86-64 PXE clients without iPXE get iPXE first, over TFTP.
    pub uefi_ipxe: &'static str,
    /// PXELINUX, in the tree for BIOS PXE stacks iPXE cannot run on.
    pub pxelinux: &'static str,
}

pub const PXE: PxeFiles = PxeFiles {
    ipxe_script: bootfs::pxe::DHCP_BOOT.ipxe,
    bios_ipxe: bootfs::pxe::DHCP_BOOT.bios,
    uefi_ipxe: bootfs::pxe::DHCP_BOOT.uefi_x64,
    pxelinux: bootfs::pxe::DHCP_BOOT.bios_pxelinux,
};

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("overlay {path}: {source}")]
    Load {
        path: PathBuf,
        #[source]
        source: OverlayError,
    },
    #[error("rendering node {node}: {source}")]
    Render {
        node: String,
        #[source]
        source: OverlayError,
    },
    #[error("node {node} has no MAC address")]
    NoMac { node: String },
    #[error("node {node}: VIP {vip} is not among the plan's VIPs")]
    UnknownVip { node: String, vip: Ipv4Addr },
    #[error(
        "node {node} is named like the VIP {vip} (`{name}`): name the node otherwise, so that `{name}` has one address"
    )]
    NameClash {
        name: String,
        node: String,
        vip: Ipv4Addr,
    },
    #[error("{path}: a {theirs} in one overlay is a {ours} in another")]
    KindClash {
        path: PathBuf,
        ours: &'static str,
        theirs: &'static str,
    },
    #[error("SSH host key for node {node}: {message}")]
    Key { node: String, message: String },
    #[error("SSH host key for node {node}: {path}: {source}")]
    KeyIo {
        node: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: entry paths must be relative and stay inside the tree")]
    BadPath { path: PathBuf },
}

/// The overlay folders a profile names, loaded once for every node.
#[derive(Debug, Clone)]
pub struct NodeOverlays {
    overlays: Vec<Overlay>,
}

impl NodeOverlays {
    /// Loads `plan.image.overlays`, which are relative to `profile_dir`
    /// (the cluster profile's folder).
    pub fn load(plan: &Plan, profile_dir: &Path) -> Result<NodeOverlays, RenderError> {
        let overlays = plan
            .image
            .overlays
            .iter()
            .map(|o| {
                let path = profile_dir.join(o);
                Overlay::load(&path).map_err(|source| RenderError::Load { path, source })
            })
            .collect::<Result<_, _>>()?;
        Ok(NodeOverlays { overlays })
    }

    /// `node`'s files: every overlay rendered with its [`Context`], later
    /// overlays replacing earlier ones path by path. Pure. For many nodes
    /// of one plan, [`NodeOverlays::for_plan`] costs less.
    pub fn render(&self, plan: &Plan, node: &NodePlan) -> Result<Vec<Entry>, RenderError> {
        self.for_plan(plan)?.render(node)
    }

    /// The overlays ready to render `plan`'s nodes: the cluster-wide
    /// context ([`Common`]) made and handed to the templates once, the
    /// templates parsed once, and `{{#cluster_wide}}` blocks rendered once.
    pub fn for_plan<'a>(&'a self, plan: &'a Plan) -> Result<PlanOverlays<'a>, RenderError> {
        let context = PlanContext::new(plan)?;
        let shared = serde_json::to_value(&context.common)
            .unwrap_or_else(|e| unreachable!("a context always serializes: {e}"));
        let renderers = self
            .overlays
            .iter()
            .map(|o| {
                o.renderer(shared.clone())
                    .map_err(|source| RenderError::Load {
                        path: o.root().to_owned(),
                        source,
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(PlanOverlays {
            plan,
            context,
            renderers,
        })
    }
}

/// A plan's node overlays, ready to render node after node
/// ([`NodeOverlays::for_plan`]).
#[derive(Debug)]
pub struct PlanOverlays<'a> {
    plan: &'a Plan,
    context: PlanContext,
    renderers: Vec<templating::Renderer<'a>>,
}

impl PlanOverlays<'_> {
    /// `node`'s files (a node of the plan): every overlay rendered with its
    /// [`Context`] laid over the shared one, later overlays replacing
    /// earlier ones path by path. Pure.
    pub fn render(&mut self, node: &NodePlan) -> Result<Vec<Entry>, RenderError> {
        let context = self.context.node(self.plan, node)?;
        let own = match serde_json::to_value(&context) {
            Ok(serde_json::Value::Object(map)) => map,
            other => unreachable!("a node's context is an object: {other:?}"),
        };
        let mut out = Vec::new();
        for r in &mut self.renderers {
            let entries = r
                .render(own.clone())
                .map_err(|source| RenderError::Render {
                    node: node.name.to_string(),
                    source,
                })?;
            merge(&mut out, entries)?;
        }
        Ok(out)
    }
}

fn kind_name(k: &Kind) -> &'static str {
    match k {
        Kind::Dir => "folder",
        Kind::File(_) => "file",
        Kind::Symlink(_) => "symbolic link",
    }
}

/// Lays `more` over `base`: an entry replaces the one at its path (a folder
/// keeps its place but takes the newer mode and owner), missing parent
/// folders are added (0755, root), and the result stays in path order,
/// parents first. A file where the other side has a folder is an error.
pub fn merge(base: &mut Vec<Entry>, more: Vec<Entry>) -> Result<(), RenderError> {
    let mut by_path: BTreeMap<PathBuf, Entry> =
        base.drain(..).map(|e| (e.path.clone(), e)).collect();
    for e in more {
        check_relative(&e.path)?;
        if let Some(old) = by_path.get(&e.path) {
            let (was_dir, is_dir) = (old.kind == Kind::Dir, e.kind == Kind::Dir);
            if was_dir != is_dir {
                return Err(RenderError::KindClash {
                    path: e.path.clone(),
                    ours: kind_name(&e.kind),
                    theirs: kind_name(&old.kind),
                });
            }
        }
        for parent in e.path.ancestors().skip(1) {
            if parent.as_os_str().is_empty() {
                break;
            }
            match by_path.get(parent) {
                Some(p) if p.kind != Kind::Dir => {
                    return Err(RenderError::KindClash {
                        path: parent.to_owned(),
                        ours: "folder",
                        theirs: kind_name(&p.kind),
                    });
                }
                Some(_) => {}
                None => {
                    by_path.insert(
                        parent.to_owned(),
                        Entry {
                            path: parent.to_owned(),
                            kind: Kind::Dir,
                            mode: 0o755,
                            uid: 0,
                            gid: 0,
                        },
                    );
                }
            }
        }
        by_path.insert(e.path.clone(), e);
    }
    base.extend(by_path.into_values());
    Ok(())
}

fn check_relative(path: &Path) -> Result<(), RenderError> {
    use std::path::Component;
    if path.components().all(|c| matches!(c, Component::Normal(_))) && !path.as_os_str().is_empty()
    {
        Ok(())
    } else {
        Err(RenderError::BadPath {
            path: path.to_owned(),
        })
    }
}

/// Writes `entries` under `root` with their modes and owners (owners need
/// root). Existing files are replaced. Used by tests and by anything that
/// lays a node's files onto a mounted tree.
pub fn write_tree(entries: &[Entry], root: &Path) -> Result<(), RenderError> {
    for e in entries {
        check_relative(&e.path)?;
        let path = root.join(&e.path);
        let err = |source| RenderError::Write {
            path: path.clone(),
            source,
        };
        match &e.kind {
            Kind::Dir => match std::fs::create_dir(&path) {
                Err(x) if x.kind() == std::io::ErrorKind::AlreadyExists && path.is_dir() => {}
                other => other.map_err(err)?,
            },
            Kind::File(bytes) => {
                remove_if_there(&path).map_err(err)?;
                std::fs::write(&path, bytes).map_err(err)?;
            }
            Kind::Symlink(target) => {
                remove_if_there(&path).map_err(err)?;
                symlink(target, &path).map_err(err)?;
            }
        }
        std::os::unix::fs::lchown(&path, Some(e.uid), Some(e.gid)).map_err(err)?;
        if !matches!(e.kind, Kind::Symlink(_)) {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(e.mode))
                .map_err(err)?;
        }
    }
    Ok(())
}

fn remove_if_there(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

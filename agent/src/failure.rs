//! Why a boot stopped, and where the administrator should look.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use crate::cmdline::CmdlineError;
use crate::copy::CopyError;
use crate::dm::LayoutError;
use crate::modules::ModuleError;
use crate::node::NodeError;
use crate::san::SanError;

#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error("{0}")]
    Cmdline(#[source] CmdlineError),
    #[error("{0}")]
    Modules(#[source] ModuleError),
    #[error("loading kernel module {path}: {source}")]
    Insmod {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("mounting {what} on {target}: {source}")]
    Mount {
        what: String,
        target: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{what} did not appear within {} s", .waited.as_secs())]
    Timeout { what: String, waited: Duration },
    #[error("{0}")]
    San(#[source] SanError),
    #[error("{0}")]
    Node(#[source] NodeError),
    #[error("{0}")]
    Layout(#[source] LayoutError),
    #[error("{command} failed: {detail}")]
    Tool { command: String, detail: String },
    #[error("assembling the root of {node}: {source}")]
    Snapshot {
        node: String,
        #[source]
        source: Box<Failure>,
    },
    #[error("storage interface {sif}: {detail}")]
    Network { sif: String, detail: String },
    #[error("choosing the origin slot of {node}: {source}")]
    Slot {
        node: String,
        #[source]
        source: crate::slot::SlotError,
    },
    #[error("applying the node's files: {0}")]
    Copy(#[source] CopyError),
    #[error("the node's root has no {0}")]
    NoInit(PathBuf),
    #[error("the node agent failed: {0}")]
    Bug(String),
    #[error("switching root to {root}: {source}")]
    SwitchRoot {
        root: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl Failure {
    /// One line that says where to look next.
    pub fn where_to_look(&self) -> String {
        match self {
            Failure::Cmdline(_) => "look at the boot entry's command line (cat /proc/cmdline); \
                vlx-install writes it from the cluster profile (vlx-install plan shows it)"
                .into(),
            Failure::Modules(_) | Failure::Insmod { .. } => {
                "look at /etc/vlx/modules.load and /lib/modules/$(uname -r) in the initramfs, \
                 and at dmesg; rebuild the image with vlx-image if a module is missing"
                    .into()
            }
            Failure::Read { .. } | Failure::Mount { .. } => {
                "look at dmesg, and check the volume from another node (e2fsck -fn)".into()
            }
            Failure::Timeout { .. } => {
                "look at ls /sys/block /dev and dmesg: the disk or its driver did not show up"
                    .into()
            }
            Failure::San(SanError::Paths { .. }) => {
                "look at ls /sys/block/*/device/wwid and the target's LUNs: zone or mask the \
                 other LUN so that this blade sees only the SAN's, over one path or several"
                    .into()
            }
            Failure::San(SanError::NotFound { .. }) => {
                "look at ls /sys/block and dmesg (disk drivers, SAN zoning and LUN masking), \
                 and check that vlx.cluster= names the cluster that vlx-install wrote to the SAN"
                    .into()
            }
            Failure::Node(NodeError::UnknownMac { .. }) => {
                "add one of these MACs to the cluster profile and re-run vlx-install, \
                 or check the blade's network interfaces (ls /sys/class/net)"
                    .into()
            }
            Failure::Node(_) => "look at /run/vlx/meta/plan.json and vlx.cluster= in \
                /proc/cmdline; vlx-install status shows what the SAN holds"
                .into(),
            Failure::Layout(_) => {
                "the SAN's GPT and /run/vlx/meta/plan.json disagree: run vlx-install verify".into()
            }
            Failure::Tool { .. } => "look at dmesg and at the command's output above".into(),
            Failure::Snapshot { node, .. } => format!(
                "look at dmesg (device-mapper); a broken snapshot store returns to factory \
                 state, losing the node's changes, with vlx-install reset-node {node}"
            ),
            Failure::Network { .. } => "look at ip addr, ip link and dmesg, at the DHCP server \
                or vlx.sifip=, and at the iSCSI target's access list for this initiator"
                .into(),
            Failure::Slot { .. } => "look at /run/vlx/meta/slots.json and at vlx-install status \
                (each node's slot); vlx-install rollback points the cluster at its previous slot"
                .into(),
            Failure::Copy(_) => "look at the node's tree under /run/vlx/meta/nodes/ and at \
                /newroot; vlx-install renders it again"
                .into(),
            Failure::Bug(_) => "this is a bug in vlx-node: report the console lines above".into(),
            Failure::NoInit(_) | Failure::SwitchRoot { .. } => {
                "look at /newroot: the origin on the SAN is not a bootable root (vlx-install verify)"
                    .into()
            }
        }
    }
}

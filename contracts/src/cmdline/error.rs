//! Why a kernel command line is refused: one error for every spelling the
//! parsers of [`super::node`] and [`super::iscsi`] read.

/// Why a secret on the command line is refused.
pub const CHAP_REFUSED: &str = "CHAP credentials do not go on the kernel command line, which \
     every user of the node and everyone the boot tree is served to can read: let the boot \
     ROM publish them in the iBFT and boot with rd.iscsi.firmware=1";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CmdlineError {
    #[error("the kernel command line has no vlx.cluster=<uuid>")]
    NoCluster,
    #[error("the kernel command line has no vlx.san=disk or vlx.san=iscsi")]
    NoTransport,
    #[error("{key}={value} on the kernel command line: {reason}")]
    Bad {
        key: String,
        value: String,
        reason: String,
    },
    #[error("an iSCSI boot needs {0} on the kernel command line")]
    Missing(&'static str),
    #[error("{0} is an iSCSI parameter, but the command line says vlx.san=disk")]
    NotForDisk(String),
    /// A CHAP credential; its value is never repeated.
    #[error("{0}= on the kernel command line: {CHAP_REFUSED}")]
    Secret(String),
    #[error(
        "{key} on the kernel command line is not an iSCSI parameter vlx reads (known: {known})"
    )]
    UnknownIscsi { key: String, known: String },
    #[error(
        "{0} names a target, but the command line also says to take it from the firmware \
         (rd.iscsi.firmware=1 or iscsi_auto): drop one of them"
    )]
    FirmwareAndTarget(String),
    #[error("vlx.{key} on the kernel command line is not a vlx parameter (known: {known})")]
    Unknown { key: String, known: String },
}

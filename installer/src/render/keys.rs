//! Per-node SSH host keys, made by the real `ssh-keygen`.
//!
//! Keys are random: two installs of the same plan give different keys, so
//! they stay out of the pure rendering and out of any reproducibility check
//! (see `overlays/README.md`).

use std::path::{Path, PathBuf};
use std::process::Command;

use cluster::plan::NodePlan;
use templating::{Entry, Kind};

use super::RenderError;

/// The one host key type made per node. Ed25519 keys are small, fast, and
/// what every OpenSSH since 6.5 accepts; the Debian image's sshd is limited
/// to it (`overlays/debian`), so keys baked into the golden image, the same
/// on every node, are never offered.
pub const KEY_TYPE: &str = "ed25519";

/// Makes `node`'s SSH host key pair with `ssh-keygen -t ed25519 -N ''
/// -C root@<fqdn>` and returns it as entries for the node's root:
/// `etc/ssh/ssh_host_ed25519_key` (0600) and `.pub` (0644), owned by root.
/// [`super::merge`] them into the node's rendered files (which adds
/// `etc/ssh` if no overlay has it).
pub fn host_keys(node: &NodePlan) -> Result<Vec<Entry>, RenderError> {
    let name = node.name.to_string();
    let dir = tempfile::tempdir().map_err(|source| RenderError::KeyIo {
        node: name.clone(),
        path: std::env::temp_dir(),
        source,
    })?;
    let file = format!("ssh_host_{KEY_TYPE}_key");
    let private = dir.path().join(&file);
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", KEY_TYPE, "-N", "", "-C"])
        .arg(format!("root@{}", node.fqdn))
        .arg("-f")
        .arg(&private)
        .output()
        .map_err(|e| RenderError::Key {
            node: name.clone(),
            message: format!("cannot run ssh-keygen (package openssh-client): {e}"),
        })?;
    if !out.status.success() {
        return Err(RenderError::Key {
            node: name,
            message: format!(
                "ssh-keygen failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    let read = |p: &Path| {
        std::fs::read(p).map_err(|source| RenderError::KeyIo {
            node: name.clone(),
            path: p.to_owned(),
            source,
        })
    };
    let key = read(&private)?;
    let public = read(&dir.path().join(format!("{file}.pub")))?;
    let at = |f: &str| PathBuf::from("etc/ssh").join(f);
    let entry = |path, bytes, mode| Entry {
        path,
        kind: Kind::File(bytes),
        mode,
        uid: 0,
        gid: 0,
    };
    Ok(vec![
        entry(at(&file), key, 0o600),
        entry(at(&format!("{file}.pub")), public, 0o644),
    ])
}

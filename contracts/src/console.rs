//! Console lines that test rigs and administrators wait for: the node
//! agent's, the installer environment's and the host image's init's. Each
//! is a whole line's start; `docs/contracts.md` ("What the rig relies on")
//! lists where each is printed.

/// Every line of the node agent (`vlx-node`) starts with this.
pub const AGENT: &str = "vlx-node:";
/// The agent's line when the node's root is assembled: `vlx-node: ready <node>`.
pub const AGENT_READY: &str = "vlx-node: ready";
/// The agent's line when a step failed (a shell follows).
pub const AGENT_ERROR: &str = "vlx-node: error:";

/// Every line of the installer environment (`vlx-install media-env`)
/// starts with this.
pub const INSTALL: &str = "vlx-install:";
/// The installer environment's line when the install failed (a shell
/// follows).
pub const INSTALL_ERROR: &str = "vlx-install: error:";
/// The installer environment's last line before it powers off.
pub const INSTALL_DONE: &str = "vlx-install: powering off";

/// The host image's init, when the node's services run:
/// `vlx: services ready <node>` (printed by a shell script of `overlays/`).
pub const SERVICES_READY: &str = "vlx: services ready";
/// The tiny image's init, when a service did not start.
pub const SERVICES_FAILED: &str = "vlx: services failed";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_start_with_their_program() {
        for l in [AGENT_READY, AGENT_ERROR] {
            assert!(l.starts_with(AGENT), "{l}");
        }
        for l in [INSTALL_ERROR, INSTALL_DONE] {
            assert!(l.starts_with(INSTALL), "{l}");
        }
    }
}

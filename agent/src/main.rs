//! `vlx-node`: the node agent, run by the kernel as `/init`.

use std::process::ExitCode;

fn main() -> ExitCode {
    if agent::sys::pid() != 1 {
        eprintln!(
            "vlx-node runs as /init of a vlx initramfs (process 1): it mounts the SAN, \
             assembles the node's root and switches to it. It does nothing elsewhere."
        );
        return ExitCode::from(2);
    }
    agent::boot::init()
}

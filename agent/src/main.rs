//! `vlx-node`: the node agent, run by the kernel as `/init`.

use std::process::ExitCode;

use agent::cli::{Cli, Command};

fn main() -> ExitCode {
    if agent::sys::pid() == 1 {
        agent::boot::init()
    }
    let cli: Cli = voice::parse();
    let result = match cli.command {
        Some(Command::Completions(c)) => c.print(agent::cli::command()),
        None => Err(voice::hint(
            "not process 1: vlx-node runs as /init of a vlx initramfs; it mounts the SAN, \
             assembles the node's root and switches to it, and does nothing elsewhere",
            "build an image with vlx-image build, which puts it into the initramfs",
        )),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let code = if e.is::<voice::Hinted>() {
                voice::exit::BAD_INPUT
            } else {
                voice::exit::FAILED
            };
            voice::fail("vlx-node", false, &e, code)
        }
    }
}

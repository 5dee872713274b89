//! `vlx-vc`: see `vc::cli`.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = vc::cli::Cli::parse();
    match vc::cli::run(cli) {
        Ok(out) => {
            let mut stdout = std::io::stdout().lock();
            match stdout
                .write_all(out.as_bytes())
                .and_then(|()| stdout.flush())
            {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("vlx-vc: writing output: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Err(f) => {
            eprintln!("vlx-vc: {:#}", f.error());
            ExitCode::from(f.exit_code())
        }
    }
}

//! How every vlx binary speaks to the person or tool that ran it.
//!
//! - **Exit codes** ([`exit`]), the same in every binary: 0 done, 1 failed,
//!   2 bad input (a flag, a profile, a file the user named), 3 refused (the
//!   target was left as it was; a question not answered "yes" is a refusal).
//! - **Errors** in one form on standard error:
//!   `BIN: error: <object>: <what is wrong>`, each cause once, then
//!   `BIN: hint: <what to do>` where there is one. A profile's diagnostics
//!   give one `error:` line each (file:line:column: key: what) and their
//!   `help` as a hint. With `--json` the error is one JSON object on one
//!   line of standard error instead ([`Failure::to_json`]).
//! - **Shell completions** ([`Completions`]): `BIN completions bash|zsh|fish`.
//!
//! A binary's `main` parses with [`parse`] (so that clap's own errors speak
//! in this form too, and exit 2), runs, and hands an error to [`fail`].

use std::fmt;
use std::io::Write;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, ValueEnum};

/// The exit codes every vlx binary uses.
pub mod exit {
    /// Done.
    pub const OK: u8 = 0;
    /// Failed (an I/O error, a failed check, a tool that failed).
    pub const FAILED: u8 = 1;
    /// Bad input: a flag, a profile or a file the user must fix.
    pub const BAD_INPUT: u8 = 2;
    /// Refused: the target was left as it was (also: not confirmed).
    pub const REFUSED: u8 = 3;
}

/// An error that carries what the user can do about it; [`fail`] prints its
/// hint on a `hint:` line. Wrap a cause with [`hint`].
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Hinted {
    message: String,
    hint: String,
}

impl Hinted {
    pub fn new(message: impl Into<String>, hint: impl Into<String>) -> Hinted {
        Hinted {
            message: message.into(),
            hint: hint.into(),
        }
    }
}

/// An error with a hint: `voice::hint("cannot read X", "pass --cluster FILE")`.
pub fn hint(message: impl Into<String>, hint: impl Into<String>) -> anyhow::Error {
    Hinted {
        message: message.into(),
        hint: hint.into(),
    }
    .into()
}

/// What a failed run says, before it is printed in either form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The binary's name, e.g. `vlx-install`.
    pub program: String,
    /// One line each: `<object>: <what is wrong>`.
    pub errors: Vec<String>,
    pub hints: Vec<String>,
    pub exit_code: u8,
}

impl Failure {
    /// Collects an error's message and causes, each once: a cause whose text
    /// the message already holds (an error that prints its source, as
    /// `io::Error` wrappers often do) is not repeated.
    pub fn new(program: &str, err: &anyhow::Error, exit_code: u8) -> Failure {
        let mut errors = Vec::new();
        let mut hints = Vec::new();
        let mut line = String::new();
        for cause in err.chain() {
            if let Some(d) = cause.downcast_ref::<cluster::Diagnostics>() {
                for diag in d.iter() {
                    errors.push(format!(
                        "{}:{}:{}: {}: {}",
                        diag.file, diag.line, diag.column, diag.key, diag.message
                    ));
                    hints.extend(diag.help.clone());
                }
                // The diagnostics are the causes; what wraps them is context.
                line.clear();
                break;
            }
            if let Some(h) = cause.downcast_ref::<Hinted>() {
                hints.push(h.hint.clone());
            }
            let text = cause.to_string();
            let text = text.trim();
            if text.is_empty() || line.contains(text) {
                continue;
            }
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(text);
        }
        if !line.is_empty() || errors.is_empty() {
            errors.insert(0, line);
        }
        Failure {
            program: program.to_owned(),
            errors,
            hints,
            exit_code,
        }
    }

    /// One JSON object on one line:
    /// `{"program", "error", "errors", "hints", "exit_code"}`; `error` is the
    /// first line, `errors` all of them.
    pub fn to_json(&self) -> String {
        serde_json::json!({
            "program": self.program,
            "error": self.errors.first(),
            "errors": self.errors,
            "hints": self.hints,
            "exit_code": self.exit_code,
        })
        .to_string()
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for e in &self.errors {
            // A message of several lines keeps the prefix on each, so that
            // every line says who speaks.
            for l in e.lines() {
                writeln!(f, "{}: error: {l}", self.program)?;
            }
        }
        for h in &self.hints {
            for l in h.lines() {
                writeln!(f, "{}: hint: {l}", self.program)?;
            }
        }
        Ok(())
    }
}

/// Prints `err` on standard error in the one form (JSON with `json`) and
/// returns the exit code to end with.
pub fn fail(program: &str, json: bool, err: &anyhow::Error, exit_code: u8) -> ExitCode {
    report(&Failure::new(program, err, exit_code), json)
}

/// Prints a [`Failure`] on standard error and returns its exit code.
pub fn report(failure: &Failure, json: bool) -> ExitCode {
    let text = if json {
        format!("{}\n", failure.to_json())
    } else {
        failure.to_string()
    };
    // Standard error closed: nothing left to tell, the exit code still says it.
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
    ExitCode::from(failure.exit_code)
}

/// Whether `--json` is among the arguments (before clap has parsed them, so
/// that a parse error can already speak JSON).
pub fn wants_json() -> bool {
    std::env::args_os().skip(1).any(|a| a == "--json")
}

/// Parses the command line into `T`. `--help` and `--version` print and
/// exit 0; a bad argument prints in the one error form and exits 2.
pub fn parse<T: CommandFactory + FromArgMatches>() -> T {
    let mut cmd = T::command();
    let program = cmd.get_name().to_owned();
    let res = cmd
        .try_get_matches_from_mut(std::env::args_os())
        .and_then(|mut m| T::from_arg_matches_mut(&mut m));
    match res {
        Ok(t) => t,
        Err(e) => {
            if !e.use_stderr() {
                // --help, --version: clap prints them on stdout.
                let _ = e.print();
                std::process::exit(i32::from(exit::OK));
            }
            let failure = clap_failure(&program, &e);
            // The code is known: bad input.
            let _: ExitCode = report(&failure, wants_json());
            std::process::exit(i32::from(exit::BAD_INPUT));
        }
    }
}

/// A clap error in the one form: its first line, and where help is.
pub fn clap_failure(program: &str, e: &clap::Error) -> Failure {
    let text = e.render().to_string();
    let first = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("invalid arguments");
    let first = first.strip_prefix("error: ").unwrap_or(first);
    let mut hints = Vec::new();
    if let Some(tip) = text.lines().find_map(|l| l.trim().strip_prefix("tip: ")) {
        hints.push(tip.to_owned());
    }
    hints.push(format!("see '{program} --help'"));
    Failure {
        program: program.to_owned(),
        errors: vec![format!("command line: {first}")],
        hints,
        exit_code: exit::BAD_INPUT,
    }
}

/// The shells completions are written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

/// `BIN completions SHELL`: add as a subcommand to every binary.
#[derive(Debug, Clone, clap::Args)]
pub struct Completions {
    /// The shell to write the completion script for.
    #[arg(value_enum)]
    pub shell: Shell,
}

impl Completions {
    /// Writes the completion script of `cmd` to standard output.
    pub fn print(&self, cmd: clap::Command) -> anyhow::Result<()> {
        let mut out = Vec::new();
        write_completions(self.shell, cmd, &mut out);
        let mut stdout = std::io::stdout().lock();
        match stdout.write_all(&out).and_then(|()| stdout.flush()) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
            other => Ok(anyhow::Context::context(
                other,
                "writing to standard output",
            )?),
        }
    }
}

/// The completion script of `cmd` for `shell`.
pub fn write_completions(shell: Shell, mut cmd: clap::Command, out: &mut dyn Write) {
    let name = cmd.get_name().to_owned();
    let shell = match shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    clap_complete::generate(shell, &mut cmd, name, out);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_cause_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file (os error 2)");
        #[derive(Debug, thiserror::Error)]
        #[error("reading /x: {0}")]
        struct Wraps(#[source] std::io::Error);
        let err = anyhow::Error::from(Wraps(io)).context("building tiny");
        let f = Failure::new("vlx-image", &err, exit::FAILED);
        assert_eq!(
            f.errors,
            vec!["building tiny: reading /x: No such file (os error 2)".to_owned()]
        );
        assert_eq!(
            f.to_string(),
            "vlx-image: error: building tiny: reading /x: No such file (os error 2)\n"
        );
    }

    #[test]
    fn hint_line_and_json() {
        let err = hint("profile p.toml: cannot read it", "pass --cluster FILE");
        let f = Failure::new("vlx-rig", &err, exit::BAD_INPUT);
        assert_eq!(
            f.to_string(),
            "vlx-rig: error: profile p.toml: cannot read it\nvlx-rig: hint: pass --cluster FILE\n"
        );
        let v: serde_json::Value = serde_json::from_str(&f.to_json()).expect("json");
        assert_eq!(v["exit_code"], 2);
        assert_eq!(v["hints"][0], "pass --cluster FILE");
        assert!(!f.to_json().contains('\n'));
    }
}

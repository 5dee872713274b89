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

/// One thing that is wrong, and what to do about it where that is known.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Said {
    /// `<object>: <what is wrong>`.
    pub error: String,
    pub hint: Option<String>,
}

/// What a failed run says, before it is printed in either form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The binary's name, e.g. `vlx-install`.
    pub program: String,
    /// At least one.
    pub errors: Vec<Said>,
    pub exit_code: u8,
}

impl Failure {
    /// Collects an error's message and causes, each once: a cause whose text
    /// the message already holds (an error that prints its source, as
    /// `io::Error` wrappers often do) is not repeated.
    pub fn new(program: &str, err: &anyhow::Error, exit_code: u8) -> Failure {
        let mut hints = Vec::new();
        let mut line = String::new();
        for cause in err.chain() {
            if let Some(d) = cause.downcast_ref::<cluster::Diagnostics>() {
                // The diagnostics are the causes; what wraps them is context.
                return Failure::diagnostics(program, d, exit_code);
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
        Failure {
            program: program.to_owned(),
            errors: vec![Said {
                error: line,
                hint: (!hints.is_empty()).then(|| hints.join("; ")),
            }],
            exit_code,
        }
    }

    /// A profile's problems: one `error:` line each (file:line:column: key:
    /// what) followed by its help as a hint, and the count last.
    pub fn diagnostics(program: &str, d: &cluster::Diagnostics, exit_code: u8) -> Failure {
        let mut errors: Vec<Said> = d
            .iter()
            .map(|diag| Said {
                error: format!(
                    "{}:{}:{}: {}: {}",
                    diag.file, diag.line, diag.column, diag.key, diag.message
                ),
                hint: diag.help.clone(),
            })
            .collect();
        let n = d.len();
        let file = d.iter().next().map_or("", |x| x.file.as_str());
        errors.push(Said {
            error: format!(
                "{file}: {n} error{} in the profile",
                if n == 1 { "" } else { "s" }
            ),
            hint: None,
        });
        Failure {
            program: program.to_owned(),
            errors,
            exit_code,
        }
    }

    /// One JSON object on one line: `{"program", "error", "hint", "errors",
    /// "exit_code"}`; `error` and `hint` are the first of `errors`.
    pub fn to_json(&self) -> String {
        let first = self.errors.first();
        serde_json::json!({
            "program": self.program,
            "error": first.map(|s| &s.error),
            "hint": first.and_then(|s| s.hint.as_ref()),
            "errors": self.errors,
            "exit_code": self.exit_code,
        })
        .to_string()
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A message of several lines keeps the prefix on each, so that every
        // line says who speaks.
        for said in &self.errors {
            for l in said.error.lines() {
                writeln!(f, "{}: error: {l}", self.program)?;
            }
            for l in said.hint.iter().flat_map(|h| h.lines()) {
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
    let mut hint = format!("see '{program} --help'");
    if let Some(tip) = text.lines().find_map(|l| l.trim().strip_prefix("tip: ")) {
        hint = format!("{tip}; {hint}");
    }
    Failure {
        program: program.to_owned(),
        errors: vec![Said {
            error: format!("command line: {first}"),
            hint: Some(hint),
        }],
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
    cmd = without_hidden(cmd);
    clap_complete::generate(shell, &mut cmd, name, out);
}

/// `cmd` rebuilt without its hidden subcommands and arguments, at every
/// level: what is hidden from `--help` is not offered by completion either.
fn without_hidden(cmd: clap::Command) -> clap::Command {
    let args: Vec<clap::Arg> = cmd
        .get_arguments()
        .filter(|a| !a.is_hide_set())
        .cloned()
        .collect();
    let subs: Vec<clap::Command> = cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .cloned()
        .map(without_hidden)
        .collect();
    let mut out = clap::Command::new(cmd.get_name().to_owned())
        .args(args)
        .subcommands(subs);
    if let Some(about) = cmd.get_about() {
        out = out.about(about.clone());
    }
    if let Some(version) = cmd.get_version() {
        out = out.version(version.to_owned());
    }
    if cmd.is_disable_help_subcommand_set() {
        out = out.disable_help_subcommand(true);
    }
    out
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
            f.errors[0].error,
            "building tiny: reading /x: No such file (os error 2)"
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
        assert_eq!(v["hint"], "pass --cluster FILE");
        assert!(!f.to_json().contains('\n'));
    }
}

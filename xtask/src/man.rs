//! `cargo xtask man DIR`: section-8 man pages of every binary, from the
//! same `clap` commands the binaries parse with (each crate's `cli`
//! module), so a page cannot drift from `--help`.

use std::path::Path;

use anyhow::Context;

/// Every vlx binary's command line. A new binary is one more line here
/// (and its `completions` subcommand, [`voice::Completions`]).
pub const BINARIES: &[fn() -> clap::Command] = &[
    imagebuilder::cli::command,
    installer::cli::command,
    agent::cli::command,
    qemu_tests::cli::command,
    vc_net::cli::command,
];

/// Administration tools: section 8, as for mkfs, fdisk and coreos-installer.
pub const SECTION: &str = "8";

/// Writes `BIN.8` for every binary and `BIN-SUB.8` for each of its visible
/// subcommands into `dir`; returns the files written.
pub fn write_all(dir: &Path) -> anyhow::Result<Vec<std::path::PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut written = Vec::new();
    for command in BINARIES {
        let mut cmd = command();
        // Subcommands' names and versions come from their parent once built.
        cmd.build();
        for (name, page) in pages(&cmd) {
            let path = dir.join(format!("{name}.{SECTION}"));
            let mut out = Vec::new();
            clap_mangen::Man::new(page)
                .section(SECTION)
                .render(&mut out)
                .with_context(|| format!("rendering the man page of {name}"))?;
            std::fs::write(&path, out).with_context(|| format!("writing {}", path.display()))?;
            written.push(path);
        }
    }
    Ok(written)
}

/// The binary's own page, and one per visible subcommand (as `git-commit`
/// is to `git`), named `BIN-SUB`.
fn pages(cmd: &clap::Command) -> Vec<(String, clap::Command)> {
    let bin = cmd.get_name().to_owned();
    let mut out = vec![(bin.clone(), cmd.clone())];
    for sub in cmd.get_subcommands() {
        if sub.is_hide_set() || sub.get_name() == "help" {
            continue;
        }
        let name = format!("{bin}-{}", sub.get_name());
        // clap takes names as 'static (without its `string` feature); a
        // page per subcommand in a one-shot tool is a small leak.
        let page = sub
            .clone()
            .name(&*name.clone().leak())
            .version(&*cmd.get_version().unwrap_or_default().to_owned().leak());
        out.push((name, page));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// Runs a checker that must be installed (`cargo xtask deps` installs
    /// it); a missing one fails the test, saying which package to install.
    fn check(program: &str, args: &[&str], package: &str) -> std::process::Output {
        Command::new(program)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {program} ({e}): install {package}"))
    }

    #[test]
    fn every_page_renders_without_warnings() {
        let dir = tempfile::tempdir().unwrap();
        let pages = write_all(dir.path()).unwrap();
        for bin in [
            "vlx-image",
            "vlx-install",
            "vlx-node",
            "vlx-rig",
            "vlx-vc-net",
        ] {
            assert!(
                pages.iter().any(|p| p.ends_with(format!("{bin}.8"))),
                "no page for {bin}: {pages:?}"
            );
        }
        assert!(pages.iter().any(|p| p.ends_with("vlx-install-apply.8")));
        assert!(
            !pages
                .iter()
                .any(|p| p.to_string_lossy().contains("media-env")),
            "the internal media-env has a page"
        );
        for page in &pages {
            let p = page.to_str().unwrap();
            // -ww: every warning; -z: no output, only the check.
            let o = check("groff", &["-man", "-Tutf8", "-ww", "-z", p], "groff");
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(o.status.success() && err.is_empty(), "{p}: groff: {err}");
            let o = Command::new("man")
                .args(["-l", "--warnings", p])
                .env("MANPAGER", "cat")
                .env("MANWIDTH", "80")
                .output()
                .unwrap_or_else(|e| panic!("cannot run man ({e}): install man-db"));
            let err = String::from_utf8_lossy(&o.stderr);
            let text = String::from_utf8_lossy(&o.stdout);
            assert!(o.status.success() && err.is_empty(), "{p}: man -l: {err}");
            assert!(text.contains("NAME"), "{p}: {text}");
        }
    }

    fn scripts(shell: voice::Shell, ext: &str) -> Vec<(String, tempfile::NamedTempFile)> {
        BINARIES
            .iter()
            .map(|command| {
                let cmd = command();
                let name = cmd.get_name().to_owned();
                let mut f = tempfile::Builder::new().suffix(ext).tempfile().unwrap();
                voice::write_completions(shell, cmd, &mut f);
                (name, f)
            })
            .collect()
    }

    fn syntax_ok(shell: voice::Shell, program: &str, ext: &str) {
        for (name, f) in scripts(shell, ext) {
            let p = f.path().to_str().unwrap();
            let o = check(program, &["-n", p], program);
            assert!(
                o.status.success(),
                "{program} -n rejects the completions of {name}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            let text = std::fs::read_to_string(p).unwrap();
            assert!(text.contains(&name), "{name}: {text}");
        }
    }

    #[test]
    fn bash_accepts_every_completion_script() {
        syntax_ok(voice::Shell::Bash, "bash", ".bash");
    }

    #[test]
    fn zsh_accepts_every_completion_script() {
        syntax_ok(voice::Shell::Zsh, "zsh", ".zsh");
    }

    #[test]
    fn fish_accepts_every_completion_script() {
        syntax_ok(voice::Shell::Fish, "fish", ".fish");
    }
}

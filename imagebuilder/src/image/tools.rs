//! `image.tools`: vlx executables a host image's root carries in
//! `/usr/sbin` (such as `vlx-vcd`, the virtual-cluster agent its systemd
//! unit runs). They come from the folder of the build's node agent (a
//! cargo target folder, or wherever `--agent` points), the same build as
//! the initramfs's `/init`.

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result, io};
use crate::image::libs::{self, Resolver};
use crate::image::tree::{Content, Entry, Tree};
use crate::profile::HostProfile;

/// Where the tools go in the root.
pub const DIR: &str = "usr/sbin";

/// One tool: its name and the file it is taken from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tool {
    pub name: String,
    pub from: PathBuf,
}

impl Tool {
    /// Its path inside the root.
    pub fn in_root(&self) -> PathBuf {
        Path::new(DIR).join(&self.name)
    }
}

/// Finds every tool of the profile beside `agent`; a missing one is an
/// error naming the profile's key, the folder and how to build it.
pub fn find(profile: &HostProfile, agent: &Path) -> Result<Vec<Tool>> {
    let dir = agent.parent().unwrap_or(Path::new("."));
    profile
        .tools
        .iter()
        .map(|name| {
            let from = dir.join(name);
            if from.is_file() {
                Ok(Tool {
                    name: name.clone(),
                    from,
                })
            } else {
                // Not the profile's fault: the build machine lacks the file.
                Err(Error::Other(format!(
                    "{}: image.tools: {name} is not in {} (the node agent's folder): build it \
                     (cargo build --workspace --bins), or pass --agent from a folder that has it",
                    profile.path.display(),
                    dir.display()
                )))
            }
        })
        .collect()
}

/// Copies of the tools without symbols or debug sections (`strip`, from
/// binutils; the same input gives the same bytes) in `dir`: a debug build
/// of the workspace is several times larger than the root's headroom.
pub fn stripped(tools: &[Tool], dir: &Path) -> Result<Vec<Tool>> {
    fs::create_dir_all(dir).map_err(io(dir))?;
    tools
        .iter()
        .map(|t| {
            let to = dir.join(&t.name);
            crate::tool::run(
                std::process::Command::new("strip")
                    .arg("-o")
                    .arg(&to)
                    .arg(&t.from),
                &format!("stripping {} (package binutils)", t.from.display()),
            )?;
            Ok(Tool {
                name: t.name.clone(),
                from: to,
            })
        })
        .collect()
}

/// Adds the tools to a planned `host` root, with every library they load
/// from the build machine (as the profile's binaries get theirs).
pub fn add_to_tree(tree: &mut Tree, tools: &[Tool], resolver: &Resolver) -> Result<()> {
    for t in tools {
        tree.mkdir_p(Path::new(DIR))?;
        tree.insert(
            &t.in_root(),
            Entry::file(Content::Host(t.from.clone()), 0o755),
        )?;
        let from = [t.from.clone()];
        for lib in resolver.closure(&from)? {
            if tree.get(&lib).is_none() {
                tree.add_host_path(&lib)?;
            }
        }
    }
    Ok(())
}

/// Copies the tools into a root already on disk (an mmdebstrap or
/// tarball root) and checks that each can be loaded there: its
/// interpreter and libraries come from the root's own packages.
pub fn install(root: &Path, tools: &[Tool]) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for t in tools {
        let to = root.join(t.in_root());
        if let Some(dir) = to.parent() {
            fs::create_dir_all(dir).map_err(io(dir))?;
        }
        fs::copy(&t.from, &to).map_err(io(&t.from))?;
        fs::set_permissions(&to, fs::Permissions::from_mode(0o755)).map_err(io(&to))?;
        libs::check_in_root(root, &to)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(tools: &[&str]) -> HostProfile {
        let text = format!(
            "[image]\nname = \"t\"\nversion = \"1\"\ntools = [{}]\n[rootfs]\nsource = \"host\"\nbinaries = [\"busybox\"]\n[kernel]\npackage = \"linux-image-cloud-amd64\"\n",
            tools
                .iter()
                .map(|t| format!("\"{t}\""))
                .collect::<Vec<_>>()
                .join(", ")
        );
        HostProfile::parse(Path::new("p/host.toml"), &text, String::new()).expect("profile")
    }

    #[test]
    fn a_missing_tool_names_the_key_and_the_folder() {
        let dir = tempfile::tempdir().expect("tempdir");
        let agent = dir.path().join("vlx-node");
        fs::write(&agent, b"x").expect("agent");
        fs::write(dir.path().join("vlx-vc"), b"y").expect("tool");
        let p = profile(&["vlx-vc", "vlx-vcd"]);
        let e = find(&p, &agent)
            .expect_err("vlx-vcd is missing")
            .to_string();
        assert!(e.contains("image.tools: vlx-vcd is not in"), "{e}");
        assert!(e.contains(&dir.path().display().to_string()), "{e}");
        let p = profile(&["vlx-vc"]);
        let found = find(&p, &agent).expect("vlx-vc is there");
        assert_eq!(found[0].from, dir.path().join("vlx-vc"));
        assert_eq!(found[0].in_root(), Path::new("usr/sbin/vlx-vc"));
    }

    #[test]
    fn a_tool_that_needs_a_library_the_root_lacks_is_refused() {
        // The build machine's own `ls` in an empty root: its interpreter is
        // not there.
        let root = tempfile::tempdir().expect("root");
        let ls = libs::find_program("ls").expect("ls");
        let tool = Tool {
            name: "vlx-ls".into(),
            from: ls,
        };
        let e = install(root.path(), std::slice::from_ref(&tool))
            .expect_err("no loader in the root")
            .to_string();
        assert!(e.contains("not found"), "{e}");
        assert!(e.contains("PT_INTERP"), "{e}");
    }

    #[test]
    fn a_tool_name_must_be_a_vlx_executable() {
        for bad in ["sh", "vlx-", "vlx-../x", "vlx-A", "/usr/bin/vlx-vc"] {
            let text = format!(
                "[image]\nname = \"t\"\nversion = \"1\"\ntools = [\"{bad}\"]\n[rootfs]\nsource = \"host\"\nbinaries = [\"busybox\"]\n[kernel]\npackage = \"linux-image-cloud-amd64\"\n"
            );
            let e = HostProfile::parse(Path::new("p/host.toml"), &text, String::new())
                .expect_err(bad)
                .to_string();
            assert!(e.contains("image.tools"), "{bad}: {e}");
            assert!(e.contains("not the name of a vlx executable"), "{bad}: {e}");
        }
    }
}

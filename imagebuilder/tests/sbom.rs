//! Image tier: `sbom.spdx.json` of the tiny host image. Every ELF file of
//! the root (read back from `origin.ext4` by debugfs) is in the SBOM with
//! its sha256, under the package `dpkg -S` names on the build machine, at
//! the version `dpkg-query` gives; the document keeps SPDX 2.3's rules.
// Helpers outside #[test] functions panic on purpose too.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::Command;

use common::*;
use contracts::image as manifest;
use imagebuilder::image::sbom;

/// Every regular ELF file under `root` with its sha256, by image path.
fn elves(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let list = run(Command::new("find")
        .arg(root)
        .args(["-type", "f", "-print0"]));
    for p in list.split('\0').filter(|p| !p.is_empty()) {
        let bytes = fs::read(p).unwrap();
        if bytes.starts_with(b"\x7fELF") {
            let rel = p.strip_prefix(root.to_str().unwrap()).unwrap();
            out.insert(rel.to_owned(), imagebuilder::hash::sha256_bytes(&bytes));
        }
    }
    out
}

#[test]
fn tiny_image_sbom_accounts_for_every_binary() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("img");
    run(Command::new(env!("CARGO_BIN_EXE_vlx-image"))
        .arg("build")
        .arg("--profile")
        .arg(workspace().join("profiles/hosts/tiny.toml"))
        .arg("--out")
        .arg(&out)
        .arg("--agent")
        .arg(agent())
        .env("SOURCE_DATE_EPOCH", EPOCH.to_string()));
    let m = manifest::verify_dir(&out).unwrap();
    assert!(
        m.artifact(sbom::FILE).is_some(),
        "the manifest lists no SBOM"
    );
    let doc = spdx::check(&fs::read_to_string(out.join(sbom::FILE)).unwrap());

    // The root as the ext4 holds it.
    let tree = d.path().join("tree");
    fs::create_dir(&tree).unwrap();
    run(Command::new("debugfs")
        .arg("-R")
        .arg(format!("rdump / {}", tree.display()))
        .arg(out.join("origin.ext4")));
    let elves = elves(&tree);
    assert!(
        elves.contains_key("/usr/sbin/dnsmasq") && elves.contains_key("/usr/bin/busybox"),
        "{elves:?}"
    );

    let files: BTreeMap<String, &serde_json::Value> = doc["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let name = f["fileName"].as_str().unwrap();
            (name.trim_start_matches('.').to_owned(), f)
        })
        .collect();
    let ids: BTreeMap<&str, &serde_json::Value> = doc["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["SPDXID"].as_str().unwrap(), p))
        .collect();
    // file id -> the package that CONTAINS it
    let owner: BTreeMap<&str, &serde_json::Value> = doc["relationships"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["relationshipType"] == "CONTAINS")
        .filter_map(|r| {
            Some((
                r["relatedSpdxElement"].as_str()?,
                *ids.get(r["spdxElementId"].as_str()?)?,
            ))
        })
        .collect();

    for (path, sha) in &elves {
        let f = files
            .get(path)
            .unwrap_or_else(|| panic!("{path} is an ELF file of the image but not in the SBOM"));
        let sum = f["checksums"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["algorithm"] == "SHA256")
            .unwrap()["checksumValue"]
            .as_str()
            .unwrap();
        assert_eq!(sum, sha, "{path}");
        let pkg = owner[f["SPDXID"].as_str().unwrap()];
        let name = pkg["name"].as_str().unwrap();
        if path.starts_with("/usr/lib/modules/") || path.starts_with("/lib/modules/") {
            assert!(name.starts_with("linux-image-"), "{path}: {name}");
            continue;
        }
        // The build machine's dpkg agrees on owner and version.
        let (base, twin) = match path.strip_prefix("/usr") {
            Some(rest) => (path.clone(), rest.to_owned()),
            None => (path.clone(), format!("/usr{path}")),
        };
        let found = [base, twin].iter().any(|p| {
            let o = Command::new("dpkg").arg("-S").arg(p).output().unwrap();
            String::from_utf8_lossy(&o.stdout).lines().any(|l| {
                l.split(": ").next().is_some_and(|owners| {
                    owners
                        .split(", ")
                        .any(|o| o.split(':').next() == Some(name))
                })
            })
        });
        assert!(found, "{path}: dpkg -S does not name {name}");
        let version = run(Command::new("dpkg-query")
            .args(["-W", "-f", "${Version}"])
            .arg(name));
        assert_eq!(pkg["versionInfo"], version.as_str(), "{name}");
        assert_eq!(m.packages.get(name), Some(&version), "manifest: {name}");
    }
    // Files of the SBOM that the image does not have would be wrong too.
    for path in files.keys() {
        assert!(
            elves.contains_key(path),
            "{path} is in the SBOM, not in the image"
        );
    }
}

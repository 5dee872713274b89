//! Structural checks of an SPDX 2.3 JSON document against the spec's
//! rules and the SPDX license list as Debian ships it
//! (node-spdx-license-ids, node-spdx-exceptions).

use std::collections::BTreeSet;

use serde_json::Value;

const LICENSE_IDS: &str = "/usr/share/nodejs/spdx-license-ids/index.json";
const DEPRECATED_IDS: &str = "/usr/share/nodejs/spdx-license-ids/deprecated.json";

fn id_list(path: &str) -> BTreeSet<String> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{path}: {e} (cargo xtask deps installs it)"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn is_spdx_ref(id: &str, prefix: &str) -> bool {
    id.strip_prefix(prefix).is_some_and(|rest| {
        !rest.is_empty()
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
    })
}

/// Panics naming the first rule `doc` breaks; returns the document.
pub fn check(text: &str) -> Value {
    let doc: Value = serde_json::from_str(text).expect("the SBOM is JSON");
    let s = |v: &Value, k: &str| -> String {
        v[k].as_str()
            .unwrap_or_else(|| panic!("`{k}` is not a string in {v}"))
            .to_owned()
    };
    assert_eq!(s(&doc, "spdxVersion"), "SPDX-2.3");
    assert_eq!(s(&doc, "dataLicense"), "CC0-1.0");
    assert_eq!(s(&doc, "SPDXID"), "SPDXRef-DOCUMENT");
    assert!(!s(&doc, "name").is_empty());
    let ns = s(&doc, "documentNamespace");
    assert!(ns.contains(':') && !ns.contains('#'), "namespace {ns}");
    let created = s(&doc["creationInfo"], "created");
    assert!(
        created.len() == 20 && created.ends_with('Z') && created.as_bytes()[10] == b'T',
        "created {created}"
    );
    assert!(
        doc["creationInfo"]["creators"]
            .as_array()
            .is_some_and(|c| !c.is_empty())
    );

    let licenses = id_list(LICENSE_IDS);
    let deprecated = id_list(DEPRECATED_IDS);
    let refs: BTreeSet<String> = doc["hasExtractedLicensingInfos"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| {
                    let id = s(e, "licenseId");
                    assert!(is_spdx_ref(&id, "LicenseRef-"), "licenseId {id}");
                    assert!(!s(e, "extractedText").is_empty(), "{id} has no text");
                    id
                })
                .collect()
        })
        .unwrap_or_default();
    let check_expr = |what: &str, expr: &str| {
        if expr == "NOASSERTION" || expr == "NONE" {
            return;
        }
        let mut depth = 0i32;
        for tok in expr
            .replace('(', " ( ")
            .replace(')', " ) ")
            .split_whitespace()
        {
            match tok {
                "(" => depth += 1,
                ")" => depth -= 1,
                "AND" | "OR" => {}
                t if t.starts_with("LicenseRef-") => {
                    assert!(refs.contains(t), "{what}: {t} is not defined")
                }
                t => assert!(
                    licenses.contains(t) && !deprecated.contains(t),
                    "{what}: `{t}` is not on the SPDX license list"
                ),
            }
            assert!(depth >= 0, "{what}: unbalanced `{expr}`");
        }
        assert_eq!(depth, 0, "{what}: unbalanced `{expr}`");
    };

    let mut ids = BTreeSet::from(["SPDXRef-DOCUMENT".to_owned()]);
    for p in doc["packages"].as_array().expect("packages") {
        let id = s(p, "SPDXID");
        assert!(is_spdx_ref(&id, "SPDXRef-"), "SPDXID {id}");
        assert!(ids.insert(id.clone()), "{id} twice");
        assert!(!s(p, "name").is_empty(), "{id} has no name");
        assert!(!s(p, "downloadLocation").is_empty(), "{id}");
        check_expr(&id, &s(p, "licenseConcluded"));
        check_expr(&id, &s(p, "licenseDeclared"));
        assert!(p["filesAnalyzed"].is_boolean(), "{id}: filesAnalyzed");
    }
    for f in doc["files"].as_array().into_iter().flatten() {
        let id = s(f, "SPDXID");
        assert!(is_spdx_ref(&id, "SPDXRef-"), "SPDXID {id}");
        assert!(ids.insert(id.clone()), "{id} twice");
        assert!(s(f, "fileName").starts_with("./"), "{id}: fileName");
        let sums = f["checksums"].as_array().expect("checksums");
        assert!(
            sums.iter().any(|c| c["algorithm"] == "SHA1"
                && c["checksumValue"].as_str().is_some_and(|v| v.len() == 40)),
            "{id} has no SHA1 checksum"
        );
        check_expr(&id, &s(f, "licenseConcluded"));
    }
    for r in doc["relationships"].as_array().expect("relationships") {
        for k in ["spdxElementId", "relatedSpdxElement"] {
            let id = s(r, k);
            assert!(ids.contains(&id), "relationship names unknown {id}");
        }
    }
    // A package whose files are not analyzed contains no file.
    for p in doc["packages"].as_array().into_iter().flatten() {
        if p["filesAnalyzed"] == false {
            let id = s(p, "SPDXID");
            for r in doc["relationships"].as_array().into_iter().flatten() {
                if r["spdxElementId"] == id.as_str() && r["relationshipType"] == "CONTAINS" {
                    let other = s(r, "relatedSpdxElement");
                    assert!(!other.starts_with("SPDXRef-File-"), "{id} contains {other}");
                }
            }
        }
    }
    doc
}

//! VC profiles (`profiles/vcs/*.toml`) and blades files, read with every
//! problem reported at once, each naming file, line, column and key
//! (`cluster::diag`). `profiles/README.md` documents the keys.

use std::fmt::Display;
use std::str::FromStr;

use cluster::diag::{Diagnostics, Report, Source, Span};
use cluster::{Bytes, NodeName};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::model::{Blade, Fit, MAX_VMS, Policy, Restart, VcId, VcName, VcSpec};
use crate::state::NetRequest;

/// Keys of a VC profile.
pub const VC_KEYS: &[&str] = &[
    "name",
    "id",
    "guest",
    "vms",
    "vcpus",
    "memory",
    "placement",
    "mode",
    "restart",
    "subnet",
    "outside",
];

/// Keys of one `[[blades]]` entry.
pub const BLADE_KEYS: &[&str] = &["name", "cores", "memory"];

/// A table being read, with its key path.
struct Tbl<'a, 'i> {
    table: &'a DeTable<'i>,
    span: Span,
    path: String,
}

fn kind(v: &DeValue<'_>) -> &'static str {
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

impl<'a, 'i> Tbl<'a, 'i> {
    fn key(&self, k: &str) -> String {
        if self.path.is_empty() {
            k.to_owned()
        } else {
            format!("{}.{k}", self.path)
        }
    }

    fn check_keys(&self, rep: &mut Report<'_>, known: &[&str]) {
        for (k, _) in self.table.iter() {
            let name: &str = k.get_ref();
            if !known.contains(&name) {
                rep.error(
                    &k.span(),
                    &self.key(name),
                    format!("unknown key `{name}`"),
                    Some(format!("valid keys here: {}", known.join(", "))),
                );
            }
        }
    }

    fn raw(&self, rep: &mut Report<'_>, k: &str, req: bool) -> Option<&'a Spanned<DeValue<'i>>> {
        let v = self.table.get(k);
        if v.is_none() && req {
            rep.error(&self.span, &self.key(k), format!("missing key `{k}`"), None);
        }
        v
    }

    fn string(&self, rep: &mut Report<'_>, k: &str, req: bool) -> Option<(String, Span)> {
        let v = self.raw(rep, k, req)?;
        match v.get_ref() {
            DeValue::String(s) => Some((s.to_string(), v.span())),
            other => {
                rep.error(
                    &v.span(),
                    &self.key(k),
                    format!("expected a string, found {}", kind(other)),
                    None,
                );
                None
            }
        }
    }

    fn parsed<T>(&self, rep: &mut Report<'_>, k: &str, req: bool) -> Option<T>
    where
        T: FromStr,
        T::Err: Display,
    {
        let (s, span) = self.string(rep, k, req)?;
        s.parse::<T>()
            .map_err(|e| rep.error(&span, &self.key(k), e.to_string(), None))
            .ok()
    }

    /// An integer in `min..=max`.
    fn int(&self, rep: &mut Report<'_>, k: &str, req: bool, min: u32, max: u32) -> Option<u32> {
        let v = self.raw(rep, k, req)?;
        let n = match v.get_ref() {
            DeValue::Integer(i) if i.radix() == 10 => {
                i.as_str().replace('_', "").parse::<i64>().ok()
            }
            other => {
                rep.error(
                    &v.span(),
                    &self.key(k),
                    format!("expected an integer, found {}", kind(other)),
                    None,
                );
                return None;
            }
        };
        match n.and_then(|n| u32::try_from(n).ok()) {
            Some(n) if (min..=max).contains(&n) => Some(n),
            _ => {
                rep.error(
                    &v.span(),
                    &self.key(k),
                    format!("`{}` is out of range", v.get_ref().as_str().unwrap_or("?")),
                    Some(format!("write a number from {min} to {max}")),
                );
                None
            }
        }
    }
}

/// Parses the text of `source` as TOML; syntax errors become diagnostics.
fn root<'i>(rep: &mut Report<'_>, text: &'i str) -> Option<Spanned<DeTable<'i>>> {
    let (root, errors) = DeTable::parse_recoverable(text);
    if errors.is_empty() {
        return Some(root);
    }
    for e in errors {
        rep.error(
            &e.span().unwrap_or(0..0),
            "(syntax)",
            format!("not valid TOML: {}", e.message()),
            None,
        );
    }
    None
}

/// Largest memory a VM may ask for (QEMU's and any blade's practical limit).
const MAX_VM_MEMORY: Bytes = Bytes(1 << 40);
/// Smallest memory a VM may ask for: below this no Linux guest boots.
const MIN_VM_MEMORY: Bytes = Bytes::mib(16);

fn memory(rep: &mut Report<'_>, t: &Tbl<'_, '_>, min: Bytes) -> Option<Bytes> {
    let m: Bytes = t.parsed(rep, "memory", true)?;
    if m < min || m > MAX_VM_MEMORY {
        let span = t.table.get("memory").map_or(t.span.clone(), |v| v.span());
        rep.error(
            &span,
            &t.key("memory"),
            format!("{m} is out of range"),
            Some(format!("write a size from {min} to {MAX_VM_MEMORY}")),
        );
        return None;
    }
    Some(m)
}

/// Reads a VC profile.
pub fn load_vc(source: &Source) -> Result<VcSpec, Diagnostics> {
    let mut rep = Report::new(source);
    let spec = parse_vc(&mut rep, source.text());
    rep.finish()?;
    spec.ok_or_else(|| Diagnostics(Vec::new()))
}

fn parse_vc(rep: &mut Report<'_>, text: &str) -> Option<VcSpec> {
    let root = root(rep, text)?;
    let t = Tbl {
        table: root.get_ref(),
        span: 0..text.len(),
        path: String::new(),
    };
    t.check_keys(rep, VC_KEYS);
    let name: Option<VcName> = t.parsed(rep, "name", true);
    let id = t
        .int(rep, "id", false, 1, crate::model::MAX_VC_ID)
        .and_then(VcId::new);
    let guest = t.string(rep, "guest", true);
    if let Some((g, span)) = &guest
        && let Err(e) = cluster::name::check_label(g, 63)
    {
        rep.error(
            span,
            "guest",
            format!("`{g}` is not a guest name: {e}"),
            None,
        );
    }
    let vms = t.int(rep, "vms", true, 1, MAX_VMS);
    let vcpus = if t.table.contains_key("vcpus") {
        t.int(rep, "vcpus", false, 1, 1024)
    } else {
        Some(1)
    };
    let memory = memory(rep, &t, MIN_VM_MEMORY);
    let placement = t
        .parsed(rep, "placement", false)
        .or((!t.table.contains_key("placement")).then_some(Policy::Block));
    let mode = t
        .parsed(rep, "mode", false)
        .or((!t.table.contains_key("mode")).then_some(Fit::Strict));
    let restart = t
        .parsed(rep, "restart", false)
        .or((!t.table.contains_key("restart")).then_some(Restart::Manual));
    let name = name?;
    let id = match (t.table.contains_key("id"), id) {
        (false, _) => VcId::from_name(&name),
        (true, Some(id)) => id,
        (true, None) => return None,
    };
    Some(VcSpec {
        id,
        name,
        guest: guest?.0,
        vms: vms?,
        vcpus: vcpus?,
        memory: memory?,
        placement: placement?,
        mode: mode?,
        restart: restart?,
    })
}

/// Reads the network keys of a VC profile: `subnet` (else one from the
/// cluster's pool at creation) and `outside` (default false). The other keys
/// are [`load_vc`]'s.
pub fn load_vc_net(source: &Source) -> Result<NetRequest, Diagnostics> {
    let mut rep = Report::new(source);
    let req = parse_vc_net(&mut rep, source.text());
    rep.finish()?;
    req.ok_or_else(|| Diagnostics(Vec::new()))
}

fn parse_vc_net(rep: &mut Report<'_>, text: &str) -> Option<NetRequest> {
    let root = root(rep, text)?;
    let t = Tbl {
        table: root.get_ref(),
        span: 0..text.len(),
        path: String::new(),
    };
    let subnet = if t.table.contains_key("subnet") {
        Some(t.parsed(rep, "subnet", false)?)
    } else {
        None
    };
    let outside = match t.raw(rep, "outside", false) {
        None => false,
        Some(v) => match v.get_ref() {
            DeValue::Boolean(b) => *b,
            other => {
                rep.error(
                    &v.span(),
                    "outside",
                    format!("expected a boolean, found {}", kind(other)),
                    None,
                );
                return None;
            }
        },
    };
    Some(NetRequest { subnet, outside })
}

/// Reads a blades file: `[[blades]]` entries with `name`, `cores`, `memory`.
pub fn load_blades(source: &Source) -> Result<Vec<Blade>, Diagnostics> {
    let mut rep = Report::new(source);
    let blades = parse_blades(&mut rep, source.text());
    rep.finish()?;
    blades.ok_or_else(|| Diagnostics(Vec::new()))
}

fn parse_blades(rep: &mut Report<'_>, text: &str) -> Option<Vec<Blade>> {
    let root = root(rep, text)?;
    let top = Tbl {
        table: root.get_ref(),
        span: 0..text.len(),
        path: String::new(),
    };
    top.check_keys(rep, &["blades"]);
    let arr = top.raw(rep, "blades", true)?;
    let DeValue::Array(items) = arr.get_ref() else {
        rep.error(
            &arr.span(),
            "blades",
            format!("expected an array of tables, found {}", kind(arr.get_ref())),
            Some("write [[blades]] entries".into()),
        );
        return None;
    };
    let mut out: Vec<Blade> = Vec::new();
    let mut seen: Vec<(NodeName, Span)> = Vec::new();
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        let path = format!("blades[{i}]");
        let DeValue::Table(table) = item.get_ref() else {
            rep.error(
                &item.span(),
                &path,
                format!("expected a table, found {}", kind(item.get_ref())),
                None,
            );
            ok = false;
            continue;
        };
        let t = Tbl {
            table,
            span: item.span(),
            path,
        };
        t.check_keys(rep, BLADE_KEYS);
        let name: Option<NodeName> = t.parsed(rep, "name", true);
        let cores = t.int(rep, "cores", true, 1, 65_536);
        let mem = memory(rep, &t, Bytes::mib(1));
        if let Some(n) = &name {
            let span = table.get("name").map_or(item.span(), |v| v.span());
            if let Some((_, first)) = seen.iter().find(|(s, _)| s == n) {
                let (line, _) = rep.source().line_col(first.start);
                rep.error(
                    &span,
                    &t.key("name"),
                    format!("duplicate blade name `{n}`"),
                    Some(format!("it is already named on line {line}")),
                );
                ok = false;
            } else {
                seen.push((n.clone(), span));
            }
        }
        match (name, cores, mem) {
            (Some(name), Some(cores), Some(memory)) => out.push(Blade {
                name,
                cores,
                memory,
            }),
            _ => ok = false,
        }
    }
    if items.is_empty() {
        rep.error(
            &arr.span(),
            "blades",
            "no blades",
            Some("write at least one [[blades]] entry".into()),
        );
        return None;
    }
    ok.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vc(text: &str) -> Result<VcSpec, Diagnostics> {
        load_vc(&Source::new("vc.toml", text))
    }

    fn blades(text: &str) -> Result<Vec<Blade>, Diagnostics> {
        load_blades(&Source::new("b.toml", text))
    }

    #[test]
    fn a_small_profile_takes_defaults() {
        let s = vc("name = \"a\"\nguest = \"tiny\"\nvms = 2\nmemory = \"128MiB\"\n").unwrap();
        assert_eq!(s.vcpus, 1);
        assert_eq!(s.placement, Policy::Block);
        assert_eq!(s.mode, Fit::Strict);
        assert_eq!(s.restart, Restart::Manual);
        assert_eq!(s.id, VcId::from_name(&s.name));
    }

    #[test]
    fn every_problem_is_named_with_place_and_key() {
        let e = vc(concat!(
            "name = \"A b\"\n",
            "guest = \"tiny\"\n",
            "vms = 0\n",
            "memory = \"lots\"\n",
            "placement = \"spread\"\n",
            "colour = 1\n",
        ))
        .unwrap_err();
        let lines: Vec<String> = e
            .iter()
            .map(|d| format!("{}:{}:{} {}", d.file, d.line, d.column, d.key))
            .collect();
        assert_eq!(
            lines,
            [
                "vc.toml:1:8 name",
                "vc.toml:3:7 vms",
                "vc.toml:4:10 memory",
                "vc.toml:5:13 placement",
                "vc.toml:6:1 colour",
            ]
        );
        assert!(e.0[4].message.contains("unknown key `colour`"));
    }

    #[test]
    fn missing_keys_are_named() {
        let e = vc("name = \"a\"\n").unwrap_err();
        let keys: Vec<&str> = e.iter().map(|d| d.key.as_str()).collect();
        assert_eq!(keys, ["guest", "vms", "memory"]);
    }

    #[test]
    fn duplicate_blade_names_are_refused() {
        let e = blades(concat!(
            "[[blades]]\nname = \"b1\"\ncores = 2\nmemory = \"1GiB\"\n",
            "[[blades]]\nname = \"b1\"\ncores = 2\nmemory = \"1GiB\"\n",
        ))
        .unwrap_err();
        assert_eq!(e.len(), 1);
        assert_eq!(e.0[0].line, 6);
        assert_eq!(e.0[0].key, "blades[1].name");
        assert_eq!(e.0[0].message, "duplicate blade name `b1`");
        assert_eq!(
            e.0[0].help.as_deref(),
            Some("it is already named on line 2")
        );
    }

    #[test]
    fn blade_keys_are_checked() {
        let e = blades("[[blades]]\nname = \"b1\"\ncores = -1\nmemory = \"1GiB\"\ngpu = 1\n")
            .unwrap_err();
        let keys: Vec<&str> = e.iter().map(|d| d.key.as_str()).collect();
        assert_eq!(keys, ["blades[0].cores", "blades[0].gpu"]);
    }
}

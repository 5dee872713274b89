//! The little of ELF the builder reads: the interpreter (`PT_INTERP`) and
//! the dynamic section's `DT_NEEDED`, `DT_RUNPATH` and `DT_RPATH`. Enough to
//! find every shared library a binary loads, the way the loader does,
//! without running `ldd` (which executes the binary's interpreter).

use std::path::{Path, PathBuf};

use crate::error::{Error, Result, io};

const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const DT_NULL: u64 = 0;
const DT_NEEDED: u64 = 1;
const DT_STRTAB: u64 = 5;
const DT_RPATH: u64 = 15;
const DT_RUNPATH: u64 = 29;

/// What the loader needs to know about one ELF file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dynamic {
    /// `PT_INTERP`: the program interpreter (executables only).
    pub interpreter: Option<PathBuf>,
    pub needed: Vec<String>,
    pub rpath: Vec<String>,
    pub runpath: Vec<String>,
}

/// Whether `path` starts with the ELF magic.
pub fn is_elf(path: &Path) -> Result<bool> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(io(path))?;
    let mut magic = [0u8; 4];
    match f.read_exact(&mut magic) {
        Ok(()) => Ok(&magic == b"\x7fELF"),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(io(path)(e)),
    }
}

/// Reads the dynamic-linking facts of the ELF file at `path` (64-bit
/// little-endian, the machines vlx runs on). A static binary has none.
pub fn read(path: &Path) -> Result<Dynamic> {
    let data = std::fs::read(path).map_err(io(path))?;
    parse(&data).map_err(|message| Error::Elf {
        path: path.to_owned(),
        message: message.to_owned(),
    })
}

fn u16_at(d: &[u8], off: usize) -> Result<u16, &'static str> {
    d.get(off..off + 2)
        .map(|b| u16::from_le_bytes([b[0], b[1]]))
        .ok_or("truncated")
}

fn u32_at(d: &[u8], off: usize) -> Result<u32, &'static str> {
    d.get(off..off + 4)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_le_bytes)
        .ok_or("truncated")
}

fn u64_at(d: &[u8], off: usize) -> Result<u64, &'static str> {
    d.get(off..off + 8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_le_bytes)
        .ok_or("truncated")
}

fn cstr(d: &[u8], off: usize) -> Result<String, &'static str> {
    let s = d.get(off..).ok_or("string offset past the end")?;
    let end = s
        .iter()
        .position(|b| *b == 0)
        .ok_or("unterminated string")?;
    String::from_utf8(s[..end].to_vec()).map_err(|_| "string is not UTF-8")
}

struct Segment {
    kind: u32,
    offset: u64,
    vaddr: u64,
    filesz: u64,
}

/// Parses an ELF image held in memory.
pub fn parse(d: &[u8]) -> Result<Dynamic, &'static str> {
    if d.get(..4) != Some(b"\x7fELF") {
        return Err("no ELF magic");
    }
    if d.get(4) != Some(&2) || d.get(5) != Some(&1) {
        return Err("not a 64-bit little-endian ELF");
    }
    let phoff = usize::try_from(u64_at(d, 0x20)?).map_err(|_| "bad program header offset")?;
    let phentsize = usize::from(u16_at(d, 0x36)?);
    let phnum = usize::from(u16_at(d, 0x38)?);
    if phentsize < 56 && phnum > 0 {
        return Err("program header entries too small");
    }
    let mut segs = Vec::with_capacity(phnum);
    for i in 0..phnum {
        let p = phoff + i * phentsize;
        segs.push(Segment {
            kind: u32_at(d, p)?,
            offset: u64_at(d, p + 8)?,
            vaddr: u64_at(d, p + 16)?,
            filesz: u64_at(d, p + 32)?,
        });
    }
    let mut out = Dynamic::default();
    if let Some(s) = segs.iter().find(|s| s.kind == PT_INTERP) {
        let off = usize::try_from(s.offset).map_err(|_| "bad interpreter offset")?;
        out.interpreter = Some(PathBuf::from(cstr(d, off)?));
    }
    let Some(dynamic) = segs.iter().find(|s| s.kind == PT_DYNAMIC) else {
        return Ok(out);
    };
    let mut entries = Vec::new();
    let start = usize::try_from(dynamic.offset).map_err(|_| "bad dynamic offset")?;
    let count = usize::try_from(dynamic.filesz / 16).map_err(|_| "bad dynamic size")?;
    for i in 0..count {
        let tag = u64_at(d, start + i * 16)?;
        if tag == DT_NULL {
            break;
        }
        entries.push((tag, u64_at(d, start + i * 16 + 8)?));
    }
    let strtab_vaddr = entries
        .iter()
        .find(|(t, _)| *t == DT_STRTAB)
        .map(|(_, v)| *v)
        .ok_or("dynamic section without a string table")?;
    // The string table is given as a virtual address; find its bytes
    // through the loadable segment that maps it.
    let strtab = segs
        .iter()
        .filter(|s| s.kind == PT_LOAD)
        .find(|s| strtab_vaddr >= s.vaddr && strtab_vaddr < s.vaddr + s.filesz)
        .map(|s| strtab_vaddr - s.vaddr + s.offset)
        .ok_or("string table outside every loadable segment")?;
    let strtab = usize::try_from(strtab).map_err(|_| "bad string table offset")?;
    let string = |v: u64| -> Result<String, &'static str> {
        cstr(
            d,
            strtab + usize::try_from(v).map_err(|_| "bad string offset")?,
        )
    };
    let split = |s: String| -> Vec<String> {
        s.split(':')
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect()
    };
    for (tag, v) in entries {
        match tag {
            DT_NEEDED => out.needed.push(string(v)?),
            DT_RPATH => out.rpath.extend(split(string(v)?)),
            DT_RUNPATH => out.runpath.extend(split(string(v)?)),
            _ => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_real_dynamic_binary_and_agrees_with_readelf() {
        let bin = Path::new("/usr/sbin/dmsetup");
        let d = read(bin).unwrap();
        assert_eq!(
            d.interpreter.as_deref(),
            Some(Path::new("/lib64/ld-linux-x86-64.so.2"))
        );
        let out = std::process::Command::new("readelf")
            .args(["-d", "-W"])
            .arg(bin)
            .output()
            .unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        let theirs: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("(NEEDED)"))
            .filter_map(|l| l.split('[').nth(1)?.split(']').next())
            .collect();
        assert!(!theirs.is_empty());
        assert_eq!(d.needed, theirs);
    }

    #[test]
    fn refuses_what_is_not_elf() {
        assert!(parse(b"#!/bin/sh\n").is_err());
        assert!(parse(b"\x7fELF\x01\x01").is_err());
        let mut d = b"\x7fELF\x02\x01".to_vec();
        d.resize(40, 0);
        assert_eq!(parse(&d), Err("truncated"));
    }
}

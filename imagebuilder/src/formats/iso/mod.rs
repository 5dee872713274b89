//! An ISO 9660 writer: a read-only volume of a given file tree, byte for
//! byte the same for the same inputs, optionally bootable (El Torito for
//! BIOS and UEFI, isohybrid MBR).
//!
//! Install media use it twice: `NAME.iso`, and the payload partition of
//! the USB image (the same volume without boot records), so that the
//! installer reads its payload one way from either.
//!
//! Why our own writer rather than xorriso: the media build copies half a
//! gigabyte or more twice (ISO and USB image) and must not be slower than
//! xorriso packing it once; writing the volume ourselves lets every file's
//! bytes go straight from the source file into both images with
//! `copy_file_range` while another thread checks their sha256, and it keeps
//! every byte decided by the inputs. xorriso judges the result in the tests
//! (`-report_el_torito`, `-find`, `-check_media`), and so does the kernel's
//! isofs driver (the installer mounts it).
//!
//! Choices: ISO 9660 level 3 (files over 4 GiB are split into extents, as
//! the level allows) with Rock Ridge names, modes and times; no Joliet
//! (the readers that matter, Linux and isolinux, read Rock Ridge); folders
//! and then files in path order, each file in one contiguous run of
//! blocks, boot images first; every time the build's SOURCE_DATE_EPOCH.
//! [`plan`] decides every block; [`IsoImage::write`] writes it at an offset
//! of an image file.

pub mod boot;
pub mod rock;

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::Path;

use sha2::Digest;

use crate::error::{Error, Result, io};

/// The logical block size of every ISO 9660 volume written here.
pub const BLOCK: u64 = 2048;
/// Blocks 0-15 are the system area (the isohybrid MBR goes there).
const SYSTEM_AREA: u64 = 16;
/// The largest extent of one directory record: 4 GiB less one block, so
/// that extents stay block-aligned.
const MAX_EXTENT: u64 = 0xFFFF_F800;
/// Rock Ridge names longer than this would not fit one directory record
/// next to the other entries (a record holds at most 255 bytes).
pub const MAX_NAME: usize = 120;
/// Blocks of one cylinder in the isohybrid MBR's geometry (1 MiB).
const HYBRID_ALIGN: u32 = 512;
/// Flag bits of a directory record.
const FLAG_DIR: u8 = 0x02;
const FLAG_MORE: u8 = 0x80;

pub(crate) fn both16(v: u16) -> [u8; 4] {
    let (l, b) = (v.to_le_bytes(), v.to_be_bytes());
    [l[0], l[1], b[0], b[1]]
}

pub(crate) fn both32(v: u32) -> [u8; 8] {
    let (l, b) = (v.to_le_bytes(), v.to_be_bytes());
    [l[0], l[1], l[2], l[3], b[0], b[1], b[2], b[3]]
}

/// Where a file's bytes come from: the FAT writer's type, since the media
/// put the same files on both.
pub use bootfs::fat::Source;

/// Files by `/`-separated path; folders are implied by the paths.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IsoTree {
    files: BTreeMap<String, Source>,
}

impl IsoTree {
    pub fn new() -> IsoTree {
        IsoTree::default()
    }

    /// Adds a file. Names are 1 to [`MAX_NAME`] bytes of printable ASCII
    /// without `/`; the path must not be taken, nor be a folder of another.
    pub fn add(&mut self, path: &str, source: Source) -> Result<()> {
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        let bad = |why: &str| Error::Other(format!("ISO path {path:?}: {why}"));
        if parts.is_empty() {
            return Err(bad("names no file"));
        }
        for p in &parts {
            if p.len() > MAX_NAME || *p == "." || *p == ".." {
                return Err(bad("each name has 1 to 120 bytes and is not . or .."));
            }
            if !p.bytes().all(|b| (0x20..0x7F).contains(&b)) {
                return Err(bad("names are printable ASCII"));
            }
        }
        let key = parts.join("/");
        let clash = self.files.contains_key(&key)
            || self.files.keys().any(|k| {
                k.strip_prefix(&key).is_some_and(|r| r.starts_with('/'))
                    || key
                        .strip_prefix(k.as_str())
                        .is_some_and(|r| r.starts_with('/'))
            });
        if clash {
            return Err(bad("taken, or a file and a folder at once"));
        }
        self.files.insert(key, source);
        Ok(())
    }

    pub fn get(&self, path: &str) -> Option<&Source> {
        self.files.get(path.trim_start_matches('/'))
    }

    pub fn files(&self) -> impl Iterator<Item = (&str, &Source)> {
        self.files.iter().map(|(k, v)| (k.as_str(), v))
    }
}

/// How the volume boots, by path of files in the tree.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BootSpec {
    /// isolinux.bin for BIOS El Torito (its boot information table is
    /// filled in as it is written).
    pub bios: Option<String>,
    /// A FAT image holding `/EFI/BOOT/BOOTX64.EFI`, for UEFI El Torito.
    pub efi: Option<String>,
    /// Where the boot catalog shows in the tree.
    pub catalog: String,
    /// isohdpfx.bin: makes the image bootable from a disk too (BIOS through
    /// isolinux, UEFI through an MBR partition over the EFI image).
    pub hybrid_mbr: Option<Vec<u8>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsoSpec {
    /// Up to 32 of `A-Z 0-9 _`: the label the kernel and blkid show.
    pub volume_id: String,
    /// Every time in the volume.
    pub epoch: u64,
    pub boot: Option<BootSpec>,
}

/// A file's place in the volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    pub path: String,
    pub lba: u32,
    pub source: Source,
}

/// A laid-out volume, ready to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsoImage {
    /// Blocks 16 up to the first file: descriptors, catalog, path tables,
    /// continuation area, folders.
    meta: Vec<u8>,
    /// The system area (blocks 0-15): zero, or the isohybrid MBR first.
    mbr: Option<Vec<u8>>,
    /// Files in block order.
    pub files: Vec<Placed>,
    /// The loader whose boot information table is filled as it is written.
    bios_loader: Option<u32>,
    pub blocks: u32,
}

impl IsoImage {
    /// Bytes the volume takes.
    pub fn size(&self) -> u64 {
        u64::from(self.blocks) * BLOCK
    }

    pub fn lba_of(&self, path: &str) -> Option<u32> {
        self.files.iter().find(|f| f.path == path).map(|f| f.lba)
    }
}

/// A folder of the volume, in an arena indexed by position.
#[derive(Debug, Default)]
struct Dir {
    name: String,
    parent: usize,
    /// Sub-folders by name.
    dirs: BTreeMap<String, usize>,
    /// Files by name, with their path in the tree.
    files: BTreeMap<String, String>,
    lba: u32,
    len: u32,
}

/// A directory record's date: years since 1900, month, day, hour, minute,
/// second, offset from UTC in 15-minute units.
fn record_time(epoch: u64) -> [u8; 7] {
    let (y, mo, d, h, mi, s) = civil(epoch);
    [(y - 1900) as u8, mo, d, h, mi, s, 0]
}

/// A volume descriptor's date: "YYYYMMDDHHMMSScc" and the UTC offset.
fn volume_time(epoch: u64) -> [u8; 17] {
    let (y, mo, d, h, mi, s) = civil(epoch);
    let mut t = [0u8; 17];
    t[..16].copy_from_slice(format!("{y:04}{mo:02}{d:02}{h:02}{mi:02}{s:02}00").as_bytes());
    t
}

/// Proleptic Gregorian date and time of a Unix time, in UTC.
fn civil(epoch: u64) -> (u64, u8, u8, u8, u8, u8) {
    let days = epoch / 86_400;
    let rem = epoch % 86_400;
    // Howard Hinnant's days-from-civil inverse.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let y = (yoe + era * 400 + i64::from(m <= 2)) as u64;
    (
        y,
        m,
        d,
        (rem / 3600) as u8,
        (rem / 60 % 60) as u8,
        (rem % 60) as u8,
    )
}

/// The ISO 9660 identifier of a name: upper-case d-characters, a dot
/// before the extension for files, `;1` after; unique in its folder by a
/// numbered tail. Rock Ridge carries the real name.
fn iso_names(names: &[&str], files: bool) -> Vec<String> {
    let clean = |s: &str, max: usize| -> String {
        s.chars()
            .map(|c| {
                let c = c.to_ascii_uppercase();
                if c.is_ascii_uppercase() || c.is_ascii_digit() {
                    c
                } else {
                    '_'
                }
            })
            .take(max)
            .collect()
    };
    let mut taken = std::collections::BTreeSet::new();
    names
        .iter()
        .map(|n| {
            let (base, ext) = match n.rsplit_once('.') {
                Some((b, e)) if files && !b.is_empty() => (b, e),
                _ => (*n, ""),
            };
            // Level 2 and up: name and extension together at most 30.
            let ext = clean(ext, 8);
            let room = if files { 30 - ext.len() } else { 31 };
            let base = clean(base, room);
            let make = |b: &str| {
                if files {
                    format!("{b}.{ext};1")
                } else {
                    b.to_owned()
                }
            };
            let mut name = make(&base);
            let mut i = 1u32;
            while !taken.insert(name.clone()) {
                let tail = format!("_{i}");
                let keep = base.len().min(room - tail.len());
                name = make(&format!("{}{tail}", &base[..keep]));
                i += 1;
            }
            name
        })
        .collect()
}

/// One directory record.
fn record(iso_name: &[u8], lba: u32, len: u32, flags: u8, time: &[u8; 7], su: &[u8]) -> Vec<u8> {
    let pad = usize::from(iso_name.len() % 2 == 0);
    let total = 33 + iso_name.len() + pad + su.len();
    let mut r = Vec::with_capacity(total);
    r.push(total as u8);
    r.push(0);
    r.extend_from_slice(&both32(lba));
    r.extend_from_slice(&both32(len));
    r.extend_from_slice(time);
    r.push(flags);
    r.push(0);
    r.push(0);
    r.extend_from_slice(&both16(1));
    r.push(iso_name.len() as u8);
    r.extend_from_slice(iso_name);
    if pad == 1 {
        r.push(0);
    }
    r.extend_from_slice(su);
    r
}

/// The extents of a file of `len` bytes starting at `lba`: (lba, length).
fn extents(lba: u32, len: u64) -> Vec<(u32, u32)> {
    if len == 0 {
        return vec![(lba, 0)];
    }
    let mut out = Vec::new();
    let mut done = 0u64;
    while done < len {
        let n = (len - done).min(MAX_EXTENT);
        out.push((lba + (done / BLOCK) as u32, n as u32));
        done += n;
    }
    out
}

/// One entry of a folder, as its records say.
struct Entry<'a> {
    iso: String,
    name: &'a str,
    kind: EntryKind,
}

enum EntryKind {
    Dir(usize),
    File { lba: u32, len: u64 },
}

/// Folders as an arena (root first) from the tree's paths, plus the boot
/// catalog's path when there is one.
fn folders(tree: &IsoTree, catalog: Option<&str>) -> Vec<Dir> {
    let mut dirs = vec![Dir::default()];
    let paths = tree
        .files
        .keys()
        .map(String::as_str)
        .chain(catalog.map(|c| c.trim_start_matches('/')));
    for path in paths {
        let mut parts: Vec<&str> = path.split('/').collect();
        let file = parts.pop().unwrap_or_default();
        let mut at = 0;
        for p in parts {
            at = match dirs[at].dirs.get(p) {
                Some(i) => *i,
                None => {
                    dirs.push(Dir {
                        name: p.to_owned(),
                        parent: at,
                        ..Dir::default()
                    });
                    let i = dirs.len() - 1;
                    dirs[at].dirs.insert(p.to_owned(), i);
                    i
                }
            };
        }
        dirs[at].files.insert(file.to_owned(), path.to_owned());
    }
    dirs
}

/// The arena indices in path-table order: by depth, then by parent's
/// number, then by ISO name (ECMA-119 9.4).
fn path_table_order(dirs: &[Dir]) -> Vec<usize> {
    let mut order = vec![0];
    let mut level = vec![0];
    while !level.is_empty() {
        let mut below = Vec::new();
        for &d in &level {
            let names: Vec<&str> = dirs[d].dirs.keys().map(String::as_str).collect();
            let mut kids: Vec<(String, usize)> = iso_names(&names, false)
                .into_iter()
                .zip(dirs[d].dirs.values().copied())
                .collect();
            kids.sort_by(|a, b| iso_order(&a.0, &b.0));
            below.extend(kids.into_iter().map(|(_, i)| i));
        }
        order.extend(&below);
        level = below;
    }
    order
}

/// A folder's entries in ISO name order.
fn entries_of<'a>(d: &'a Dir, placed: &BTreeMap<String, (u32, u64)>) -> Vec<Entry<'a>> {
    let dir_names: Vec<&str> = d.dirs.keys().map(String::as_str).collect();
    let file_names: Vec<&str> = d.files.keys().map(String::as_str).collect();
    let mut out: Vec<Entry<'a>> = Vec::new();
    for ((iso, name), idx) in iso_names(&dir_names, false)
        .into_iter()
        .zip(d.dirs.keys())
        .zip(d.dirs.values())
    {
        out.push(Entry {
            iso,
            name,
            kind: EntryKind::Dir(*idx),
        });
    }
    for ((iso, name), full) in iso_names(&file_names, true)
        .into_iter()
        .zip(d.files.keys())
        .zip(d.files.values())
    {
        let (lba, len) = placed.get(full).copied().unwrap_or((0, 0));
        out.push(Entry {
            iso,
            name,
            kind: EntryKind::File { lba, len },
        });
    }
    // ECMA-119 9.3: ordered by identifier, compared padded with spaces.
    out.sort_by(|a, b| iso_order(&a.iso, &b.iso));
    out
}

fn iso_order(a: &str, b: &str) -> std::cmp::Ordering {
    let split = |s: &str| -> (String, String) {
        let s = s.split(';').next().unwrap_or(s);
        match s.split_once('.') {
            Some((n, e)) => (n.to_owned(), e.to_owned()),
            None => (s.to_owned(), String::new()),
        }
    };
    let (an, ae) = split(a);
    let (bn, be) = split(b);
    let w = an.len().max(bn.len());
    let we = ae.len().max(be.len());
    (format!("{an:<w$}"), format!("{ae:<we$}")).cmp(&(format!("{bn:<w$}"), format!("{be:<we$}")))
}

/// A folder's extent: `.`, `..`, then each entry (a file of several
/// extents has one record per extent), no record across a block
/// boundary, whole blocks long. Locations are those in `dirs` and
/// `placed`; sizes do not depend on them.
fn dir_bytes(
    dirs: &[Dir],
    index: usize,
    placed: &BTreeMap<String, (u32, u64)>,
    time: &[u8; 7],
    ce_lba: u32,
) -> Vec<u8> {
    let d = &dirs[index];
    let links = |d: &Dir| 2 + d.dirs.len() as u32;
    let dir_su = |d: &Dir| {
        let mut su = rock::px(rock::S_IFDIR | 0o755, links(d));
        su.extend(rock::tf(time));
        su
    };
    let mut dot_su = Vec::new();
    if index == 0 {
        dot_su.extend_from_slice(&rock::SP);
    }
    dot_su.extend(dir_su(d));
    if index == 0 {
        dot_su.extend(rock::ce(ce_lba, 0, rock::er().len() as u32));
    }
    let parent = &dirs[d.parent];
    let mut records = vec![
        record(&[0], d.lba, d.len, FLAG_DIR, time, &dot_su),
        record(
            &[1],
            parent.lba,
            parent.len,
            FLAG_DIR,
            time,
            &dir_su(parent),
        ),
    ];
    for e in entries_of(d, placed) {
        match e.kind {
            EntryKind::Dir(i) => {
                let sub = &dirs[i];
                let mut su = dir_su(sub);
                su.extend(rock::nm(e.name));
                records.push(record(
                    e.iso.as_bytes(),
                    sub.lba,
                    sub.len,
                    FLAG_DIR,
                    time,
                    &su,
                ));
            }
            EntryKind::File { lba, len } => {
                let mut su = rock::px(rock::S_IFREG | 0o644, 1);
                su.extend(rock::tf(time));
                su.extend(rock::nm(e.name));
                let parts = extents(lba, len);
                let last = parts.len() - 1;
                for (i, (at, n)) in parts.into_iter().enumerate() {
                    let flags = if i < last { FLAG_MORE } else { 0 };
                    records.push(record(e.iso.as_bytes(), at, n, flags, time, &su));
                }
            }
        }
    }
    let mut out = Vec::new();
    for r in records {
        let used = out.len() as u64 % BLOCK;
        if used + r.len() as u64 > BLOCK {
            out.resize(out.len() + (BLOCK - used) as usize, 0);
        }
        out.extend_from_slice(&r);
    }
    let len = (out.len() as u64).div_ceil(BLOCK).max(1) * BLOCK;
    out.resize(len as usize, 0);
    out
}

/// The path table, little-endian (type L) or big-endian (type M).
fn path_table(dirs: &[Dir], order: &[usize], big: bool) -> Vec<u8> {
    let mut number = vec![0u16; dirs.len()];
    for (n, &i) in order.iter().enumerate() {
        number[i] = (n + 1) as u16;
    }
    let mut t = Vec::new();
    for &i in order {
        let d = &dirs[i];
        let id: Vec<u8> = if i == 0 {
            vec![0]
        } else {
            let parent = &dirs[d.parent];
            let names: Vec<&str> = parent.dirs.keys().map(String::as_str).collect();
            let isos = iso_names(&names, false);
            let pos = parent.dirs.keys().position(|k| *k == d.name).unwrap_or(0);
            isos[pos].clone().into_bytes()
        };
        t.push(id.len() as u8);
        t.push(0);
        if big {
            t.extend_from_slice(&d.lba.to_be_bytes());
            t.extend_from_slice(&number[d.parent].to_be_bytes());
        } else {
            t.extend_from_slice(&d.lba.to_le_bytes());
            t.extend_from_slice(&number[d.parent].to_le_bytes());
        }
        t.extend_from_slice(&id);
        if id.len() % 2 == 1 {
            t.push(0);
        }
    }
    t
}

fn padded<const N: usize>(s: &str) -> [u8; N] {
    let mut b = [b' '; N];
    let n = s.len().min(N);
    b[..n].copy_from_slice(&s.as_bytes()[..n]);
    b
}

/// The primary volume descriptor (ECMA-119 8.4).
fn primary_descriptor(
    spec: &IsoSpec,
    blocks: u32,
    path_table_len: u32,
    pt_l: u32,
    pt_m: u32,
    root_record: &[u8],
) -> Vec<u8> {
    let mut d = vec![0u8; BLOCK as usize];
    d[0] = 1;
    d[1..6].copy_from_slice(b"CD001");
    d[6] = 1;
    d[8..40].copy_from_slice(&padded::<32>("LINUX"));
    d[40..72].copy_from_slice(&padded::<32>(&spec.volume_id));
    d[80..88].copy_from_slice(&both32(blocks));
    d[120..124].copy_from_slice(&both16(1));
    d[124..128].copy_from_slice(&both16(1));
    d[128..132].copy_from_slice(&both16(BLOCK as u16));
    d[132..140].copy_from_slice(&both32(path_table_len));
    d[140..144].copy_from_slice(&pt_l.to_le_bytes());
    d[148..152].copy_from_slice(&pt_m.to_be_bytes());
    d[156..190].copy_from_slice(root_record);
    d[190..318].copy_from_slice(&padded::<128>(""));
    d[318..446].copy_from_slice(&padded::<128>(""));
    d[446..574].copy_from_slice(&padded::<128>(""));
    d[574..702].copy_from_slice(&padded::<128>("VLX-IMAGE"));
    d[702..739].copy_from_slice(&padded::<37>(""));
    d[739..776].copy_from_slice(&padded::<37>(""));
    d[776..813].copy_from_slice(&padded::<37>(""));
    let t = volume_time(spec.epoch);
    d[813..830].copy_from_slice(&t);
    d[830..847].copy_from_slice(&t);
    // Expiration: none ("0" digits, offset 0); effective: now.
    d[847..863].copy_from_slice(b"0000000000000000");
    d[864..881].copy_from_slice(&t);
    d[881] = 1;
    d
}

/// Lays out `tree` as `spec` says. Reads no file: sizes come with the
/// sources.
pub fn plan(spec: &IsoSpec, tree: &IsoTree) -> Result<IsoImage> {
    if spec.volume_id.is_empty()
        || spec.volume_id.len() > 32
        || !spec
            .volume_id
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err(Error::Other(format!(
            "volume id {:?}: 1 to 32 of A-Z, 0-9 and _",
            spec.volume_id
        )));
    }
    let boot = spec.boot.as_ref();
    if let Some(b) = boot {
        for p in b.bios.iter().chain(b.efi.iter()) {
            if tree.get(p).is_none() {
                return Err(Error::Other(format!("boot image {p} is not in the tree")));
            }
        }
        if tree.get(&b.catalog).is_some() || b.catalog.trim_matches('/').is_empty() {
            return Err(Error::Other(format!(
                "boot catalog path {:?} is taken or empty",
                b.catalog
            )));
        }
        if b.hybrid_mbr.is_some() && b.bios.is_none() {
            return Err(Error::Other(
                "an isohybrid MBR needs a BIOS boot image (isolinux.bin)".into(),
            ));
        }
    }
    let catalog = boot.map(|b| b.catalog.trim_start_matches('/').to_owned());
    let mut dirs = folders(tree, catalog.as_deref());
    let order = path_table_order(&dirs);
    if order.len() > usize::from(u16::MAX) {
        return Err(Error::Other("more than 65535 folders".into()));
    }
    let time = record_time(spec.epoch);
    let none = BTreeMap::new();

    // Descriptors: primary, boot record, terminator.
    let mut lba = SYSTEM_AREA as u32 + 2 + u32::from(boot.is_some());
    let catalog_lba = boot.map(|_| {
        lba += 1;
        lba - 1
    });
    let pt_len = path_table(&dirs, &order, false).len() as u32;
    let pt_blocks = u64::from(pt_len).div_ceil(BLOCK) as u32;
    let (pt_l, pt_m) = (lba, lba + pt_blocks);
    lba += 2 * pt_blocks;
    let ce_lba = lba;
    lba += 1;
    for &i in &order {
        let len = dir_bytes(&dirs, i, &none, &time, 0).len() as u32;
        dirs[i].lba = lba;
        dirs[i].len = len;
        lba += len / BLOCK as u32;
    }
    let meta_end = lba;

    // Files: boot images first, then the rest in path order.
    let first: Vec<&str> = boot
        .map(|b| {
            b.efi
                .iter()
                .chain(b.bios.iter())
                .map(|p| p.trim_start_matches('/'))
                .collect()
        })
        .unwrap_or_default();
    let rest = tree
        .files
        .keys()
        .map(String::as_str)
        .filter(|p| !first.contains(p));
    let mut files = Vec::new();
    for path in first.iter().copied().chain(rest) {
        let Some(source) = tree.files.get(path) else {
            continue;
        };
        let at = lba;
        lba = u32::try_from(u64::from(lba) + source.len().div_ceil(BLOCK))
            .map_err(|_| Error::Other("the volume outgrows 8 TiB".into()))?;
        files.push(Placed {
            path: path.to_owned(),
            lba: at,
            source: source.clone(),
        });
    }
    // A disk image of an isohybrid volume ends on a cylinder of its MBR
    // geometry (64 heads, 32 sectors: 1 MiB), as isohybrid pads it: some
    // BIOSes compute the disk's size from the partition's end.
    let blocks = if boot.is_some_and(|b| b.hybrid_mbr.is_some()) {
        lba.next_multiple_of(HYBRID_ALIGN)
    } else {
        lba
    };
    let mut placed: BTreeMap<String, (u32, u64)> = files
        .iter()
        .map(|f| (f.path.clone(), (f.lba, f.source.len())))
        .collect();
    if let (Some(c), Some(l)) = (&catalog, catalog_lba) {
        placed.insert(c.clone(), (l, BLOCK));
    }

    // The metadata blocks, 16 up to the first file.
    let mut meta = vec![0u8; ((u64::from(meta_end) - SYSTEM_AREA) * BLOCK) as usize];
    let at = |lba: u32| ((u64::from(lba) - SYSTEM_AREA) * BLOCK) as usize;
    let root_record = record(&[0], dirs[0].lba, dirs[0].len, FLAG_DIR, &time, &[]);
    let pvd = primary_descriptor(spec, blocks, pt_len, pt_l, pt_m, &root_record);
    meta[..BLOCK as usize].copy_from_slice(&pvd);
    let mut bios_loader = None;
    let mut efi_place = None;
    if let (Some(b), Some(cat)) = (boot, catalog_lba) {
        let br = SYSTEM_AREA as u32 + 1;
        meta[at(br)..at(br + 1)].copy_from_slice(&boot::boot_record(cat));
        let find = |p: &Option<String>| {
            p.as_ref()
                .and_then(|p| placed.get(p.trim_start_matches('/')))
                .copied()
        };
        let bios = find(&b.bios).map(|(lba, _)| boot::CatalogEntry {
            lba,
            sectors: boot::BIOS_LOAD_SECTORS,
        });
        efi_place = find(&b.efi);
        let efi = efi_place.map(|(lba, len)| boot::CatalogEntry {
            lba,
            sectors: boot::efi_sectors(len),
        });
        meta[at(cat)..at(cat + 1)].copy_from_slice(&boot::catalog(bios, efi));
        bios_loader = bios.map(|e| e.lba);
    }
    let term = at(SYSTEM_AREA as u32 + 1 + u32::from(boot.is_some()));
    meta[term] = 255;
    meta[term + 1..term + 6].copy_from_slice(b"CD001");
    meta[term + 6] = 1;
    let l = path_table(&dirs, &order, false);
    meta[at(pt_l)..at(pt_l) + l.len()].copy_from_slice(&l);
    let m = path_table(&dirs, &order, true);
    meta[at(pt_m)..at(pt_m) + m.len()].copy_from_slice(&m);
    let er = rock::er();
    meta[at(ce_lba)..at(ce_lba) + er.len()].copy_from_slice(&er);
    for &i in &order {
        let bytes = dir_bytes(&dirs, i, &placed, &time, ce_lba);
        let start = at(dirs[i].lba);
        meta[start..start + bytes.len()].copy_from_slice(&bytes);
    }

    let mbr = match (boot.and_then(|b| b.hybrid_mbr.as_ref()), bios_loader) {
        (Some(code), Some(loader)) => {
            let digest = sha2::Sha256::digest(&meta);
            let signature = u32::from_le_bytes([digest[0], digest[1], digest[2], digest[3]]);
            let efi = efi_place.map(|(lba, len)| (u64::from(lba) * 4, len.div_ceil(512)));
            Some(boot::hybrid_mbr(
                code,
                loader,
                signature,
                u64::from(blocks) * 4,
                efi,
            ))
        }
        _ => None,
    };
    Ok(IsoImage {
        meta,
        mbr,
        files,
        bios_loader,
        blocks,
    })
}

impl IsoImage {
    /// Writes the volume at byte `offset` of `dest` (an image file, grown
    /// when shorter): metadata, then every file (straight from its source
    /// file with `copy_file_range` where the kernel can), the BIOS loader
    /// with its boot information table filled. Blocks past a file's end
    /// are left as they are: zero in a new or sparse file. Not synced: the
    /// caller decides.
    pub fn write(&self, dest: &Path, offset: u64) -> Result<()> {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dest)
            .map_err(io(dest))?;
        let end = offset + self.size();
        if f.metadata().map_err(io(dest))?.len() < end {
            f.set_len(end).map_err(io(dest))?;
        }
        if let Some(mbr) = &self.mbr {
            f.write_all_at(mbr, offset).map_err(io(dest))?;
        }
        f.write_all_at(&self.meta, offset + SYSTEM_AREA * BLOCK)
            .map_err(io(dest))?;
        for p in &self.files {
            self.write_file(&f, dest, offset, p)?;
        }
        Ok(())
    }

    fn write_file(&self, f: &File, dest: &Path, offset: u64, p: &Placed) -> Result<()> {
        let at = offset + u64::from(p.lba) * BLOCK;
        if self.bios_loader == Some(p.lba) {
            let mut bytes = match &p.source {
                Source::Bytes(b) => b.clone(),
                Source::File { path, .. } => std::fs::read(path).map_err(io(path))?,
            };
            if bytes.len() as u64 != p.source.len() {
                return Err(changed(&p.path, p.source.len(), bytes.len() as u64));
            }
            if !boot::patch_info_table(&mut bytes, SYSTEM_AREA as u32, p.lba) {
                return Err(Error::Other(format!(
                    "{}: too short for an isolinux boot information table",
                    p.path
                )));
            }
            if self.mbr.is_some() && !boot::is_hybrid_loader(&bytes) {
                return Err(Error::Other(format!(
                    "{}: not an isolinux.bin the isohybrid MBR can start",
                    p.path
                )));
            }
            return f.write_all_at(&bytes, at).map_err(io(dest));
        }
        match &p.source {
            Source::Bytes(b) => f.write_all_at(b, at).map_err(io(dest)),
            Source::File { path, len } => {
                let mut src = File::open(path).map_err(io(path))?;
                let mut out = f;
                out.seek(SeekFrom::Start(at)).map_err(io(dest))?;
                // std copies File to File with copy_file_range: the bytes
                // never pass through this process.
                let copied =
                    std::io::copy(&mut (&mut src).take(*len), &mut out).map_err(io(path))?;
                if copied != *len {
                    return Err(changed(&path.display().to_string(), *len, copied));
                }
                Ok(())
            }
        }
    }
}

fn changed(what: &str, expected: u64, found: u64) -> Error {
    Error::Other(format!(
        "{what} changed while it was copied: it was {expected} bytes, then {found}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_d_characters() {
        let n = iso_names(&["a-b.txt", "a_b.txt", "README", "x.tar.gz"], true);
        assert_eq!(n, ["A_B.TXT;1", "A_B_1.TXT;1", "README.;1", "X_TAR.GZ;1"]);
        let long = "a".repeat(60);
        let n = iso_names(&[&long, &long.to_uppercase()], false);
        assert_eq!(n[0].len(), 31);
        assert_ne!(n[0], n[1]);
    }

    #[test]
    fn dates_in_utc() {
        // 2023-11-14 22:13:20 UTC.
        assert_eq!(civil(1_700_000_000), (2023, 11, 14, 22, 13, 20));
        assert_eq!(civil(0), (1970, 1, 1, 0, 0, 0));
        assert_eq!(&volume_time(951_782_400)[..16], b"2000022900000000");
        assert_eq!(record_time(1_700_000_000), [123, 11, 14, 22, 13, 20, 0]);
    }

    #[test]
    fn files_over_4_gib_take_several_extents() {
        let e = extents(100, 2 * MAX_EXTENT + 5);
        assert_eq!(
            e,
            [
                (100, MAX_EXTENT as u32),
                (100 + (MAX_EXTENT / BLOCK) as u32, MAX_EXTENT as u32),
                (100 + (2 * MAX_EXTENT / BLOCK) as u32, 5)
            ]
        );
        assert_eq!(extents(7, 0), [(7, 0)]);
    }

    #[test]
    fn tree_refuses_clashes() {
        let mut t = IsoTree::new();
        t.add("a/b", Source::Bytes(vec![])).unwrap();
        assert!(t.add("a/b", Source::Bytes(vec![])).is_err());
        assert!(t.add("a", Source::Bytes(vec![])).is_err());
        assert!(t.add("a/b/c", Source::Bytes(vec![])).is_err());
        assert!(t.add("a/../c", Source::Bytes(vec![])).is_err());
        assert!(t.add("a/é", Source::Bytes(vec![])).is_err());
    }
}

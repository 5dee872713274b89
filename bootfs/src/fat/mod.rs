//! A FAT32 writer: a fresh volume holding a given tree of files, byte for
//! byte the same for the same inputs.
//!
//! [`Tree`] collects files and folders; [`plan`] lays them out (pure: every
//! cluster, directory entry and boot sector is decided here); the
//! [`FatImage`] it returns writes itself into a file or block device at an
//! offset ([`FatImage::write`]). Only the volume's metadata and the files'
//! clusters are written: free clusters keep whatever the device held, which
//! FAT never reads.
//!
//! Choices, each the plain one that every reader accepts (checked by
//! `fsck.vfat -n`, mtools, Linux vfat, OVMF and syslinux in the tests):
//! two FATs; 4 KiB clusters up to 8 GiB (larger above, as mkfs.fat); the
//! data area on a MiB boundary of the volume; every file and folder in one
//! contiguous run of clusters, folders before files, in name order; short
//! 8.3 names where the name is one, else a long name with a Windows-style
//! `NAME~N.EXT` alias; every timestamp the build's [`Epoch`] in UTC; the
//! volume id given by the caller.

mod geometry;
mod name;
mod write;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use cluster::{Bytes, Lba, SectorSize};

use crate::time::{DosTime, Epoch};
pub use geometry::Geometry;

const ATTR_READ_ONLY: u8 = 0x01;
const ATTR_HIDDEN: u8 = 0x02;
const ATTR_SYSTEM: u8 = 0x04;
const ATTR_VOLUME_ID: u8 = 0x08;
const ATTR_DIRECTORY: u8 = 0x10;
const ATTR_ARCHIVE: u8 = 0x20;
const DIR_ENTRY: usize = 32;
/// FAT32 end-of-chain mark.
const EOC: u32 = 0x0FFF_FFFF;

/// Why a FAT volume cannot be made or written.
#[derive(Debug, thiserror::Error)]
pub enum FatError {
    #[error("a FAT32 volume of {size} with {sector}-byte sectors cannot be made: {reason}")]
    Size {
        size: Bytes,
        sector: SectorSize,
        reason: String,
    },
    #[error("FAT path {path:?}: {reason}")]
    Path { path: String, reason: &'static str },
    #[error("FAT path {path:?} is added twice (FAT names ignore case)")]
    Exists { path: String },
    #[error("volume label {label:?}: {reason}")]
    Label { label: String, reason: &'static str },
    #[error("{path} is {len} bytes; a FAT file holds at most 4 GiB - 1")]
    FileTooLarge { path: String, len: u64 },
    #[error("the files need {need} but the FAT32 volume holds {have}")]
    NoRoom { need: Bytes, have: Bytes },
    #[error("{path} changed while it was copied: it was {expected} bytes, then {found}")]
    Changed {
        path: PathBuf,
        expected: u64,
        found: u64,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> FatError {
    let what = what.into();
    move |source| FatError::Io { what, source }
}

/// Where a file's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Bytes(Vec<u8>),
    /// A file on the build machine, read when the volume is written; `len`
    /// is its size when it was added, checked again while copying.
    File {
        path: PathBuf,
        len: u64,
    },
}

impl Source {
    /// A file on this machine, with its current size.
    pub fn file(path: impl Into<PathBuf>) -> Result<Source, FatError> {
        let path = path.into();
        let meta = std::fs::metadata(&path).map_err(io(format!("reading {}", path.display())))?;
        if !meta.is_file() {
            return Err(FatError::Io {
                what: format!("reading {}", path.display()),
                source: std::io::Error::other("not a regular file"),
            });
        }
        Ok(Source::File {
            path,
            len: meta.len(),
        })
    }

    pub fn len(&self) -> u64 {
        match self {
            Source::Bytes(b) => b.len() as u64,
            Source::File { len, .. } => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Extra attributes of a file (FAT's archive bit is always set).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Attributes {
    pub read_only: bool,
    pub hidden: bool,
    pub system: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Dir {
    children: BTreeMap<String, Node>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Dir(Dir),
    File(Source, Attributes),
}

/// Files and folders to put on a volume, by `/`-separated path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tree {
    root: Dir,
}

fn components(path: &str) -> Result<Vec<&str>, FatError> {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    if parts.is_empty() {
        return Err(FatError::Path {
            path: path.into(),
            reason: "names no file",
        });
    }
    for p in &parts {
        name::check_long(p).map_err(|reason| FatError::Path {
            path: path.into(),
            reason,
        })?;
    }
    Ok(parts)
}

fn fold(name: &str) -> String {
    name.to_lowercase()
}

impl Dir {
    fn find_folded(&self, name: &str) -> Option<&String> {
        self.children.keys().find(|k| fold(k) == fold(name))
    }

    /// The folder `name`, made if missing.
    fn subdir(&mut self, name: &str, path: &str) -> Result<&mut Dir, FatError> {
        let key = match self.find_folded(name) {
            Some(k) => k.clone(),
            None => {
                self.children.insert(name.into(), Node::Dir(Dir::default()));
                name.into()
            }
        };
        match self.children.get_mut(&key) {
            Some(Node::Dir(d)) => Ok(d),
            _ => Err(FatError::Path {
                path: path.into(),
                reason: "a file of that name is on the way",
            }),
        }
    }
}

impl Tree {
    pub fn new() -> Tree {
        Tree::default()
    }

    fn parent(&mut self, path: &str) -> Result<(&mut Dir, String), FatError> {
        let parts = components(path)?;
        let (last, dirs) = parts.split_last().ok_or_else(|| FatError::Path {
            path: path.into(),
            reason: "names no file",
        })?;
        let mut d = &mut self.root;
        for p in dirs {
            d = d.subdir(p, path)?;
        }
        Ok((d, (*last).to_owned()))
    }

    /// Adds a folder and its parents; adding one that is there is fine.
    pub fn add_dir(&mut self, path: &str) -> Result<(), FatError> {
        let (d, last) = self.parent(path)?;
        d.subdir(&last, path).map(|_| ())
    }

    /// Adds a file, making its folders.
    pub fn add_file(&mut self, path: &str, source: Source) -> Result<(), FatError> {
        self.add_file_with(path, source, Attributes::default())
    }

    pub fn add_file_with(
        &mut self,
        path: &str,
        source: Source,
        attributes: Attributes,
    ) -> Result<(), FatError> {
        if source.len() > u64::from(u32::MAX) {
            return Err(FatError::FileTooLarge {
                path: path.into(),
                len: source.len(),
            });
        }
        let (d, last) = self.parent(path)?;
        if d.find_folded(&last).is_some() {
            return Err(FatError::Exists { path: path.into() });
        }
        d.children.insert(last, Node::File(source, attributes));
        Ok(())
    }

    /// Whether the tree holds a file or folder at `path` (ignoring case).
    pub fn contains(&self, path: &str) -> bool {
        let Ok(parts) = components(path) else {
            return false;
        };
        let mut d = &self.root;
        for (i, p) in parts.iter().enumerate() {
            let Some(k) = d.find_folded(p) else {
                return false;
            };
            match d.children.get(k) {
                Some(Node::Dir(sub)) => d = sub,
                Some(Node::File(..)) => return i == parts.len() - 1,
                None => return false,
            }
        }
        true
    }
}

/// What the volume is, besides its files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FatSpec {
    pub sector_size: SectorSize,
    /// Size of the volume (of the partition it fills).
    pub size: Bytes,
    /// The serial number readers show (`mdir`: "1234-ABCD"); derive it from
    /// an input, such as the cluster uuid.
    pub volume_id: u32,
    /// Up to 11 characters of `A-Z 0-9 - _` and space; `None`: "NO NAME".
    pub label: Option<String>,
    /// The partition's first LBA on its disk (the BPB's "hidden sectors"),
    /// 0 for a volume that is not in a partition.
    pub partition_lba: Lba,
    pub epoch: Epoch,
}

/// A laid-out volume, ready to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FatImage {
    pub geometry: Geometry,
    /// Bytes of the reserved area: boot sector, FSInfo and their backups.
    reserved: Vec<u8>,
    /// The used FAT entries, from entry 0.
    fat: Vec<u32>,
    /// Folder contents by first cluster, each whole clusters long.
    dirs: Vec<(u32, Vec<u8>)>,
    /// Files by first cluster.
    files: Vec<(u32, Source)>,
}

impl FatImage {
    /// Clusters in use.
    pub fn used_clusters(&self) -> u32 {
        self.fat.len() as u32 - 2
    }

    /// The first sector of the volume: the boot sector.
    pub fn boot_sector(&self) -> &[u8] {
        &self.reserved[..self.geometry.sector.bytes() as usize]
    }
}

fn check_label(label: &str) -> Result<[u8; 11], FatError> {
    let bad = |reason| FatError::Label {
        label: label.into(),
        reason,
    };
    if label.is_empty() || label.len() > 11 {
        return Err(bad("a label has 1 to 11 characters"));
    }
    if !label
        .bytes()
        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b"-_ ".contains(&b))
    {
        return Err(bad("a label holds only A-Z, 0-9, '-', '_' and spaces"));
    }
    let mut out = [b' '; 11];
    out[..label.len()].copy_from_slice(label.as_bytes());
    Ok(out)
}

/// Lays out `tree` on a FAT32 volume. Pure: no file is read (sizes are
/// known from the [`Source`]s).
pub fn plan(spec: &FatSpec, tree: &Tree) -> Result<FatImage, FatError> {
    let geometry = Geometry::new(spec.sector_size, spec.size)?;
    let label = spec.label.as_deref().map(check_label).transpose()?;
    let mut a = Alloc {
        geometry,
        fat: vec![0x0FFF_FFF8, EOC],
        dirs: Vec::new(),
        files: Vec::new(),
        time: spec.epoch.dos(),
    };
    let root_clusters = a.dir_clusters(&tree.root, true, label.is_some());
    let root = a.take(root_clusters)?;
    a.place_dir(&tree.root, root, None, label)?;
    let reserved = write::reserved_area(&geometry, spec, label, &a.fat);
    Ok(FatImage {
        geometry,
        reserved,
        fat: a.fat,
        dirs: a.dirs,
        files: a.files,
    })
}

struct Alloc {
    geometry: Geometry,
    fat: Vec<u32>,
    dirs: Vec<(u32, Vec<u8>)>,
    files: Vec<(u32, Source)>,
    time: DosTime,
}

impl Alloc {
    /// A contiguous run of `n` clusters; 0 for none.
    fn take(&mut self, n: u64) -> Result<u32, FatError> {
        if n == 0 {
            return Ok(0);
        }
        let first = self.fat.len() as u64;
        let end = first + n;
        if end > u64::from(self.geometry.clusters) + 2 {
            let cb = self.geometry.cluster_bytes();
            return Err(FatError::NoRoom {
                need: Bytes((end - 2) * cb),
                have: Bytes(u64::from(self.geometry.clusters) * cb),
            });
        }
        self.fat.extend((first + 1..end).map(|c| c as u32));
        self.fat.push(EOC);
        Ok(first as u32)
    }

    fn dir_clusters(&self, d: &Dir, root: bool, label: bool) -> u64 {
        let own = if root { usize::from(label) } else { 2 };
        let entries: usize = own
            + d.children
                .keys()
                .map(|k| {
                    1 + if name::needs_long(k) {
                        name::long_entries(k)
                    } else {
                        0
                    }
                })
                .sum::<usize>();
        ((entries * DIR_ENTRY) as u64)
            .div_ceil(self.geometry.cluster_bytes())
            .max(1)
    }

    /// Gives every child its clusters, then encodes the folder that sits
    /// at `me` (its parent at `parent`; `None` for the root).
    fn place_dir(
        &mut self,
        d: &Dir,
        me: u32,
        parent: Option<u32>,
        label: Option<[u8; 11]>,
    ) -> Result<(), FatError> {
        let cb = self.geometry.cluster_bytes();
        let mut out = Vec::new();
        match parent {
            None => {
                if let Some(l) = label {
                    out.extend(self.entry(&l, ATTR_VOLUME_ID, 0, 0));
                }
            }
            Some(p) => {
                out.extend(self.entry(b".          ", ATTR_DIRECTORY, me, 0));
                out.extend(self.entry(b"..         ", ATTR_DIRECTORY, p, 0));
            }
        }
        let mut shorts: Vec<[u8; 11]> = Vec::new();
        let mut subdirs = Vec::new();
        for (n, node) in &d.children {
            let short = match name::exact_short(n) {
                Some(s) => s,
                None => name::generate_short(n, |c| shorts.contains(c)),
            };
            shorts.push(short);
            let (attr, first, size) = match node {
                Node::File(src, at) => {
                    let first = self.take(src.len().div_ceil(cb))?;
                    self.files.push((first, src.clone()));
                    let mut attr = ATTR_ARCHIVE;
                    for (on, bit) in [
                        (at.read_only, ATTR_READ_ONLY),
                        (at.hidden, ATTR_HIDDEN),
                        (at.system, ATTR_SYSTEM),
                    ] {
                        if on {
                            attr |= bit;
                        }
                    }
                    (attr, first, src.len() as u32)
                }
                Node::Dir(sub) => {
                    let first = self.take(self.dir_clusters(sub, false, false))?;
                    subdirs.push((sub, first));
                    (ATTR_DIRECTORY, first, 0)
                }
            };
            if name::needs_long(n) {
                for e in name::encode_long(n, &short) {
                    out.extend(e);
                }
            }
            out.extend(self.entry(&short, attr, first, size));
        }
        out.resize(out.len().next_multiple_of(cb as usize).max(cb as usize), 0);
        self.dirs.push((me, out));
        // A subfolder's ".." names the root as cluster 0 (FAT spec 6.7).
        let me_as_parent = if parent.is_none() { 0 } else { me };
        for (sub, first) in subdirs {
            self.place_dir(sub, first, Some(me_as_parent), None)?;
        }
        Ok(())
    }

    fn entry(&self, short: &[u8; 11], attr: u8, first: u32, size: u32) -> [u8; 32] {
        let mut e = [0u8; 32];
        e[0..11].copy_from_slice(short);
        e[11] = attr;
        let (t, d) = (self.time.time.to_le_bytes(), self.time.date.to_le_bytes());
        if attr != ATTR_VOLUME_ID {
            e[14..16].copy_from_slice(&t); // created
            e[16..18].copy_from_slice(&d);
            e[18..20].copy_from_slice(&d); // accessed
        }
        e[20..22].copy_from_slice(&((first >> 16) as u16).to_le_bytes());
        e[22..24].copy_from_slice(&t); // written
        e[24..26].copy_from_slice(&d);
        e[26..28].copy_from_slice(&(first as u16).to_le_bytes());
        e[28..32].copy_from_slice(&size.to_le_bytes());
        e
    }
}

/// Writes `image` over `size` bytes at `offset` of `dest` (an image file
/// or a block device); see [`FatImage::write`].
pub fn write(image: &FatImage, dest: &Path, offset: Bytes) -> Result<(), FatError> {
    image.write(dest, offset)
}

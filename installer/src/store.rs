//! How full a node's snapshot store is, read from the store's own on-disk
//! metadata while no node is up: the dm-snapshot persistent exception
//! store (drivers/md/dm-snap-persistent.c).
//!
//! Chunk 0 holds the header: little-endian u32 `magic` ("SnAp"), `valid`
//! (0 once the kernel invalidated a store that overflowed), `version` (1)
//! and `chunk_size` (512-byte sectors). Metadata areas follow: area `i` is
//! chunk `1 + i * (per_area + 1)`, one chunk of `per_area = chunk bytes /
//! 16` exceptions of (`old_chunk`, `new_chunk`) as little-endian u64; the
//! data chunks of an area follow it. The first exception whose `new_chunk`
//! is 0 ends the table (chunk 0 is the header, so no exception points
//! there); the kernel zeroes an area before it starts filling it.
//!
//! What counts as used is what the kernel reports as allocated
//! (`persistent_usage`): every chunk up to the highest one an exception
//! points at, metadata included.

use std::io;

use cluster::Bytes;
use serde::Serialize;

/// "SnAp" as a little-endian u32 (`SNAP_MAGIC`).
const SNAP_MAGIC: u32 = 0x7041_6e53;
/// The on-disk version the kernel writes (`SNAPSHOT_DISK_VERSION`).
const DISK_VERSION: u32 = 1;
/// Bytes of one (old_chunk, new_chunk) pair.
const EXCEPTION_BYTES: u64 = 16;
/// The fills at which a store's owner is warned: past the second the store
/// is close to overflowing, which invalidates it and takes the node's root.
pub const WARN_PERCENT: [u8; 2] = [80, 95];

/// The state of one store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum StoreFill {
    /// A zeroed header: the node's next boot starts a new store.
    Fresh,
    /// A store in use.
    Used {
        /// Bytes the kernel has allocated in the store (data and metadata).
        used: Bytes,
        size: Bytes,
        chunk: Bytes,
        /// Percent of the store allocated, rounded down.
        percent: u8,
        /// False once the kernel invalidated the store (it overflowed): the
        /// node's root is lost until `reset-node`.
        valid: bool,
    },
}

impl StoreFill {
    /// The warning level reached: 0, 80 or 95 (or 100 for an invalidated
    /// store).
    pub fn level(&self) -> u8 {
        match self {
            StoreFill::Fresh => 0,
            StoreFill::Used { valid: false, .. } => 100,
            StoreFill::Used { percent, .. } => WARN_PERCENT
                .iter()
                .rev()
                .find(|w| percent >= *w)
                .copied()
                .unwrap_or(0),
        }
    }
}

impl std::fmt::Display for StoreFill {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreFill::Fresh => write!(f, "fresh"),
            StoreFill::Used {
                used,
                size,
                percent,
                valid,
                ..
            } => {
                write!(f, "{percent}% ({used} of {size})")?;
                if !valid {
                    write!(f, ", INVALIDATED: the store overflowed")?;
                }
                Ok(())
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("reading the store: {0}")]
    Io(#[from] io::Error),
    #[error("the store's header is no dm-snapshot header (magic {0:#010x})")]
    Magic(u32),
    #[error("the store's header has version {0}, not {DISK_VERSION}")]
    Version(u32),
    #[error("the store's header has chunk size {0} sectors, not a power of two from 8")]
    Chunk(u32),
    #[error("exception {index} of area {area} points at chunk {chunk}, past the store's end")]
    PastEnd { area: u64, index: u64, chunk: u64 },
}

fn le32(b: &[u8], at: usize) -> u32 {
    let mut x = [0u8; 4];
    x.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(x)
}

fn le64(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

/// Reads the fill of a store of `size` bytes; `read(offset, len)` reads
/// `len` bytes at `offset` from the store's start.
pub fn fill(
    size: Bytes,
    mut read: impl FnMut(u64, usize) -> io::Result<Vec<u8>>,
) -> Result<StoreFill, StoreError> {
    let head = read(0, 16)?;
    let magic = le32(&head, 0);
    if magic == 0 {
        return Ok(StoreFill::Fresh);
    }
    if magic != SNAP_MAGIC {
        return Err(StoreError::Magic(magic));
    }
    let valid = le32(&head, 4) != 0;
    let version = le32(&head, 8);
    if version != DISK_VERSION {
        return Err(StoreError::Version(version));
    }
    let sectors = le32(&head, 12);
    if sectors < 8 || !sectors.is_power_of_two() {
        return Err(StoreError::Chunk(sectors));
    }
    let chunk = u64::from(sectors) * 512;
    let chunks = size.get() / chunk;
    let per_area = chunk / EXCEPTION_BYTES;
    // The header, and area 0 which the kernel writes with the header.
    let mut next_free = 2u64;
    let mut area = 0u64;
    'areas: loop {
        let at = 1 + area * (per_area + 1);
        if at >= chunks {
            break;
        }
        next_free = next_free.max(at + 1);
        let table = read(at * chunk, chunk as usize)?;
        for index in 0..per_area {
            let new = le64(&table, (index * EXCEPTION_BYTES + 8) as usize);
            if new == 0 {
                break 'areas;
            }
            if new >= chunks {
                return Err(StoreError::PastEnd {
                    area,
                    index,
                    chunk: new,
                });
            }
            next_free = next_free.max(new + 1);
        }
        area += 1;
    }
    let used = next_free.min(chunks) * chunk;
    let percent = (u128::from(used) * 100 / u128::from(size.get().max(1))) as u8;
    Ok(StoreFill::Used {
        used: Bytes(used),
        size,
        chunk: Bytes(chunk),
        percent,
        valid,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store of `chunks` 4 KiB chunks with exceptions to the given
    /// chunks, laid out as the kernel writes them.
    fn store(chunks: u64, data: &[u64], valid: bool) -> Vec<u8> {
        let chunk = 4096u64;
        let per_area = chunk / 16;
        let mut s = vec![0u8; (chunks * chunk) as usize];
        s[0..4].copy_from_slice(&SNAP_MAGIC.to_le_bytes());
        s[4..8].copy_from_slice(&u32::from(valid).to_le_bytes());
        s[8..12].copy_from_slice(&1u32.to_le_bytes());
        s[12..16].copy_from_slice(&8u32.to_le_bytes());
        for (i, new) in data.iter().enumerate() {
            let i = i as u64;
            let area = i / per_area;
            let at = (1 + area * (per_area + 1)) * chunk + (i % per_area) * 16;
            let at = at as usize;
            s[at..at + 8].copy_from_slice(&(i + 1000).to_le_bytes());
            s[at + 8..at + 16].copy_from_slice(&new.to_le_bytes());
        }
        s
    }

    fn fill_of(s: &[u8]) -> Result<StoreFill, StoreError> {
        fill(Bytes(s.len() as u64), |off, len| {
            Ok(s[off as usize..off as usize + len].to_vec())
        })
    }

    #[test]
    fn counts_what_the_kernel_allocated() {
        // 1000 chunks; the first area's data chunks are 2..=257, the
        // second area is chunk 258, its data from 259.
        let fresh = vec![0u8; 4096 * 16];
        assert_eq!(fill_of(&fresh).unwrap(), StoreFill::Fresh);

        let s = store(1000, &[], true);
        let f = fill_of(&s).unwrap();
        assert!(
            matches!(
                f,
                StoreFill::Used {
                    used: Bytes(8192),
                    percent: 0,
                    ..
                }
            ),
            "{f:?}"
        );

        let s = store(1000, &[2, 3, 4, 5], true);
        let f = fill_of(&s).unwrap();
        assert!(
            matches!(
                f,
                StoreFill::Used {
                    used: Bytes(24576),
                    ..
                }
            ),
            "{f:?}"
        );

        // 256 exceptions fill area 0 (data 2..=257); 544 more go to area
        // 1 (data 259..) and area 2 (chunk 515, data 516..).
        let data: Vec<u64> = (2..258).chain(259..515).chain(516..804).collect();
        let s = store(1000, &data, true);
        let f = fill_of(&s).unwrap();
        assert_eq!(f.level(), 80, "{f}");
        assert!(matches!(f, StoreFill::Used { percent: 80, .. }), "{f:?}");

        let data: Vec<u64> = (2..258)
            .chain(259..515)
            .chain(516..772)
            .chain(773..955)
            .collect();
        let f = fill_of(&store(1000, &data, true)).unwrap();
        assert!(matches!(f, StoreFill::Used { percent: 95, .. }), "{f:?}");
        assert_eq!(f.level(), 95);

        let f = fill_of(&store(1000, &[2], false)).unwrap();
        assert_eq!(f.level(), 100);
        assert!(f.to_string().contains("INVALIDATED"), "{f}");
    }

    #[test]
    fn refuses_what_is_no_store() {
        let mut s = store(64, &[2], true);
        s[0] = b'X';
        assert!(matches!(fill_of(&s), Err(StoreError::Magic(_))));
        let mut s = store(64, &[2], true);
        s[12..16].copy_from_slice(&7u32.to_le_bytes());
        assert!(matches!(fill_of(&s), Err(StoreError::Chunk(7))));
        let s = store(64, &[64], true);
        assert!(matches!(
            fill_of(&s),
            Err(StoreError::PastEnd { chunk: 64, .. })
        ));
    }
}

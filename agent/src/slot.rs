//! The origin slot a blade boots (two-slot layouts): the cluster's current
//! slot from `slots.json` on the meta volume, and the node's own record at
//! the end of its store volume, which says which slot and image its store
//! was started on. A store is kept only over that slot and image; any
//! other store is reset here, at boot, before the snapshot is built
//! (`cluster::slots::decide`). The record is written before the snapshot
//! exists, and after the reset, so that a crash in between only resets
//! again.

use std::io;
use std::os::unix::fs::FileExt;

use cluster::slots::{
    self, Decision, NodeRecord, RECORD_BYTES, STORE_HEADER_BYTES, Slot, SlotTable,
};

/// What [`settle`] found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settled {
    pub slot: Slot,
    pub decision: Decision,
}

/// Bytes read from the store's start to tell a fresh store: dm-snapshot's
/// magic is in the first 4 bytes.
const HEAD: usize = 512;

/// Reads the node's record and its store's header from `dev` (the device
/// holding both: the store's partition, or the pool), decides by the
/// table, and resets the store and writes the record as the decision
/// says. `store_at` and `record_at` are byte offsets in `dev`.
pub fn settle(
    dev: &impl FileExt,
    store_at: u64,
    record_at: u64,
    table: &SlotTable,
    node: &str,
) -> Result<Settled, SlotError> {
    let image = table
        .current_image()
        .map_err(|e| SlotError::Table(e.to_string()))?;
    let mut area = vec![0u8; RECORD_BYTES];
    dev.read_exact_at(&mut area, record_at)
        .map_err(|e| SlotError::Io("reading the slot record", e))?;
    // A record that is not one is treated as no record: the store is of
    // unknown origin and is reset unless fresh.
    let record = NodeRecord::decode(&area).unwrap_or(None);
    let mut head = [0u8; HEAD];
    dev.read_exact_at(&mut head, store_at)
        .map_err(|e| SlotError::Io("reading the store's header", e))?;
    let fresh = head.iter().all(|b| *b == 0);
    let decision = slots::decide(table.current, image, record.as_ref(), fresh);
    if let Decision::Reset { .. } = decision {
        let zero = vec![0u8; STORE_HEADER_BYTES as usize];
        dev.write_all_at(&zero, store_at)
            .map_err(|e| SlotError::Io("resetting the store", e))?;
    }
    if decision != Decision::Keep {
        let rec = NodeRecord {
            node: node.to_owned(),
            slot: table.current,
            image_sha256: image.image_sha256.clone(),
        };
        dev.write_all_at(&rec.encode(), record_at)
            .map_err(|e| SlotError::Io("writing the slot record", e))?;
    }
    Ok(Settled {
        slot: table.current,
        decision,
    })
}

#[derive(Debug, thiserror::Error)]
pub enum SlotError {
    #[error("/run/vlx/meta/slots.json: {0}")]
    Table(String),
    #[error("{0}: {1}")]
    Io(&'static str, #[source] io::Error),
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use cluster::slots::SlotImage;

    fn img(c: &str) -> SlotImage {
        SlotImage {
            image_sha256: c.repeat(64),
            name: "tiny".into(),
            version: "1".into(),
            kernel_release: "6.1".into(),
        }
    }

    /// A store of 1 MiB with its record at 1 MiB, in a file.
    fn store() -> std::fs::File {
        let f = tempfile::tempfile().unwrap();
        f.set_len(2 << 20).unwrap();
        f
    }

    /// What the kernel leaves at a store's start once it has used it.
    fn used(f: &std::fs::File) {
        f.write_all_at(b"SnAp\x01\x00\x00\x00\x01\x00\x00\x00\x08\x00\x00\x00", 0)
            .unwrap();
        f.write_all_at(&[7u8; 4096], 4096).unwrap();
    }

    #[test]
    fn a_store_moves_to_the_current_slot_once_and_is_kept_after() {
        let f = store();
        let t = SlotTable::install(img("1"));
        // First boot: fresh store, the record is written.
        let s = settle(&f, 0, 1 << 20, &t, "n1").unwrap();
        assert_eq!(s.decision, Decision::Start);
        used(&f);
        // Later boots keep it.
        let s = settle(&f, 0, 1 << 20, &t, "n1").unwrap();
        assert_eq!(s.decision, Decision::Keep);
        let mut head = [0u8; 4];
        f.read_exact_at(&mut head, 0).unwrap();
        assert_eq!(&head, b"SnAp", "a kept store is not touched");

        // The cluster upgraded: the store is reset, the record says b.
        let up = t.upgraded(img("2"));
        let s = settle(&f, 0, 1 << 20, &up, "n1").unwrap();
        assert_eq!(
            (s.slot, &s.decision),
            (
                Slot::B,
                &Decision::Reset {
                    was: Some(NodeRecord {
                        node: "n1".into(),
                        slot: Slot::A,
                        image_sha256: "1".repeat(64)
                    })
                }
            )
        );
        let mut zero = vec![0u8; STORE_HEADER_BYTES as usize];
        f.read_exact_at(&mut zero, 0).unwrap();
        assert!(zero.iter().all(|b| *b == 0), "the header is zeroed");
        let mut area = vec![0u8; RECORD_BYTES];
        f.read_exact_at(&mut area, 1 << 20).unwrap();
        assert_eq!(NodeRecord::decode(&area).unwrap().unwrap().slot, Slot::B);

        // Booted on b, then rolled back: reset again, onto a.
        used(&f);
        let back = up.rolled_back().unwrap();
        let s = settle(&f, 0, 1 << 20, &back, "n1").unwrap();
        assert_eq!(s.slot, Slot::A);
        assert!(matches!(s.decision, Decision::Reset { .. }));
    }

    #[test]
    fn a_used_store_without_a_record_is_reset() {
        let f = store();
        used(&f);
        let s = settle(&f, 0, 1 << 20, &SlotTable::install(img("1")), "n1").unwrap();
        assert_eq!(s.decision, Decision::Reset { was: None });
    }
}

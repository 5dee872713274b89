//! Two origin slots (A/B): image upgrades with a way back.
//!
//! With `storage.slots = 2` the SAN carries two origin partitions,
//! `vlx-origin` (slot A) and `vlx-origin-b` (slot B). The cluster boots one
//! of them, the *current* slot, named in the meta volume's `slots.json`
//! ([`SlotTable`]); an upgrade writes the other one while the cluster runs
//! and then makes it current; a rollback makes the previous slot current
//! again. Every blade boots the kernel of the current slot and builds its
//! root on that slot's origin.
//!
//! A snapshot store is only valid over the origin it was started on. So
//! each node keeps a [`NodeRecord`] in the last [`RECORD_SIZE`] of its own
//! store volume (outside what the snapshot maps): the slot and image its
//! store was started on. At boot the agent compares it with the table
//! ([`decide`]): the same slot and image keep the store; anything else
//! resets it (zeroes its header) and records the new slot first. Only the
//! node writes its record; the installer reads it (`status`, and an
//! upgrade refuses to overwrite a slot a node still records).

use serde::{Deserialize, Serialize};

use crate::layout::Role;
use crate::units::{Bytes, MIB};

/// The tail of every node's store volume that holds its [`NodeRecord`]
/// when the layout has two slots: 1 MiB, so that the mapped store stays
/// aligned to every sector and chunk size.
pub const RECORD_SIZE: Bytes = Bytes(MIB);
/// Bytes of a record that are ever written or read (one 4 KiB block, the
/// largest logical sector a SAN here has).
pub const RECORD_BYTES: usize = 4096;
/// First line of a record, so that stray data is never read as one.
const RECORD_MAGIC: &[u8] = b"VLX-NODE-RECORD 1\n";
/// Bytes zeroed at the start of a store to reset it: dm-snapshot keeps its
/// header in chunk 0 and starts a new store when the header's magic is
/// zero (drivers/md/dm-snap-persistent.c, `read_header`); 64 KiB covers
/// chunk sizes up to 128 sectors. The installer's reset and the agent's
/// reset at a slot change zero the same.
pub const STORE_HEADER_BYTES: u64 = 64 << 10;
/// Version of `slots.json`.
pub const TABLE_FORMAT: u32 = 1;

/// One of the two origin slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Slot {
    A,
    B,
}

impl Slot {
    pub const ALL: [Slot; 2] = [Slot::A, Slot::B];

    pub fn other(self) -> Slot {
        match self {
            Slot::A => Slot::B,
            Slot::B => Slot::A,
        }
    }

    /// The role of this slot's origin volume (slot A is the one origin of
    /// a one-slot layout).
    pub fn role(self) -> Role {
        match self {
            Slot::A => Role::Origin,
            Slot::B => Role::OriginB,
        }
    }

    /// Lower-case name: `a`, `b` (the folder under `slots/` on the meta
    /// volume, and what `status` prints).
    pub fn name(self) -> &'static str {
        match self {
            Slot::A => "a",
            Slot::B => "b",
        }
    }
}

impl std::fmt::Display for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Slot {
    type Err = String;
    fn from_str(s: &str) -> Result<Slot, String> {
        match s {
            "a" | "A" => Ok(Slot::A),
            "b" | "B" => Ok(Slot::B),
            _ => Err(format!("{s:?} is not a slot (a or b)")),
        }
    }
}

/// The image a slot holds, as its manifest names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlotImage {
    /// sha256 of the image's `manifest.json`: names this exact image.
    pub image_sha256: String,
    pub name: String,
    pub version: String,
    pub kernel_release: String,
}

impl std::fmt::Display for SlotImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} (kernel {}, manifest sha256 {})",
            self.name,
            self.version,
            self.kernel_release,
            &self.image_sha256[..self.image_sha256.len().min(12)]
        )
    }
}

/// `slots.json` on the meta volume: the slot every blade boots, the one
/// before it, and the image of each filled slot. Written by the installer
/// only (install, upgrade, rollback); read by the node agent at boot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlotTable {
    pub format: u32,
    pub current: Slot,
    /// The slot a rollback returns to; `None` until the first upgrade.
    #[serde(default)]
    pub previous: Option<Slot>,
    #[serde(default)]
    pub a: Option<SlotImage>,
    #[serde(default)]
    pub b: Option<SlotImage>,
}

#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("not a slot table: {0}")]
    Json(#[source] serde_json::Error),
    #[error("slot table format {0} is not the supported format {TABLE_FORMAT}")]
    Version(u32),
    #[error("the slot table makes slot {0} current, but names no image in it")]
    Empty(Slot),
}

impl SlotTable {
    /// A new install: the cluster boots slot A, which holds `image`.
    pub fn install(image: SlotImage) -> SlotTable {
        SlotTable {
            format: TABLE_FORMAT,
            current: Slot::A,
            previous: None,
            a: Some(image),
            b: None,
        }
    }

    pub fn image(&self, slot: Slot) -> Option<&SlotImage> {
        match slot {
            Slot::A => self.a.as_ref(),
            Slot::B => self.b.as_ref(),
        }
    }

    fn image_mut(&mut self, slot: Slot) -> &mut Option<SlotImage> {
        match slot {
            Slot::A => &mut self.a,
            Slot::B => &mut self.b,
        }
    }

    /// The image the cluster boots.
    pub fn current_image(&self) -> Result<&SlotImage, TableError> {
        self.image(self.current)
            .ok_or(TableError::Empty(self.current))
    }

    /// The table after an upgrade has written `image` to the slot that is
    /// not current: that slot becomes current, the old one previous.
    pub fn upgraded(&self, image: SlotImage) -> SlotTable {
        let mut t = self.clone();
        let to = self.current.other();
        *t.image_mut(to) = Some(image);
        t.previous = Some(self.current);
        t.current = to;
        t
    }

    /// The table after a rollback: the previous slot current again, the
    /// slot it leaves previous (so that a second rollback undoes it).
    pub fn rolled_back(&self) -> Option<SlotTable> {
        let prev = self.previous?;
        self.image(prev)?;
        let mut t = self.clone();
        t.current = prev;
        t.previous = Some(self.current);
        Some(t)
    }

    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self)
            .unwrap_or_else(|e| unreachable!("a slot table always serializes: {e}"));
        s.push('\n');
        s
    }

    pub fn from_json(text: &str) -> Result<SlotTable, TableError> {
        let t: SlotTable = serde_json::from_str(text).map_err(TableError::Json)?;
        if t.format != TABLE_FORMAT {
            return Err(TableError::Version(t.format));
        }
        t.current_image()?;
        Ok(t)
    }
}

/// What a node writes at the end of its store volume: the slot and image
/// its snapshot store was started on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeRecord {
    pub node: String,
    pub slot: Slot,
    pub image_sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("holds no node record (its first bytes are neither zero nor a record)")]
    Foreign,
    #[error("holds a damaged node record: {0}")]
    Damaged(String),
}

impl NodeRecord {
    /// The record as the [`RECORD_BYTES`] written at the start of the
    /// record area: the magic line, one JSON line, zeros.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = RECORD_MAGIC.to_vec();
        let json = serde_json::to_string(self)
            .unwrap_or_else(|e| unreachable!("a record always serializes: {e}"));
        b.extend_from_slice(json.as_bytes());
        b.push(b'\n');
        b.resize(RECORD_BYTES.max(b.len()), 0);
        b
    }

    /// `None` for a blank area (a node that never booted since its store
    /// was made, or a layout installed before records).
    pub fn decode(area: &[u8]) -> Result<Option<NodeRecord>, RecordError> {
        decode_block(area, RECORD_MAGIC)
    }
}

/// A block of the record area: `None` when blank (all zeros), else its
/// `magic` line and one line of JSON, read within [`RECORD_BYTES`].
fn decode_block<T: serde::de::DeserializeOwned>(
    block: &[u8],
    magic: &[u8],
) -> Result<Option<T>, RecordError> {
    let block = &block[..block.len().min(RECORD_BYTES)];
    if block.iter().all(|b| *b == 0) {
        return Ok(None);
    }
    let Some(rest) = block.strip_prefix(magic) else {
        return Err(RecordError::Foreign);
    };
    let end = rest
        .iter()
        .position(|b| *b == b'\n')
        .ok_or_else(|| RecordError::Damaged("no end of line".into()))?;
    serde_json::from_slice(&rest[..end])
        .map(Some)
        .map_err(|e| RecordError::Damaged(e.to_string()))
}

/// Where, inside a node's record area, the node publishes its live status
/// ([`NodeLive`]): the 4 KiB block after its record.
pub const LIVE_OFFSET: u64 = RECORD_BYTES as u64;
/// First line of a live status block.
const LIVE_MAGIC: &[u8] = b"VLX-NODE-LIVE 1\n";

/// What a running node publishes about itself every few seconds
/// (`/usr/lib/vlx/publish`), in its record area on the SAN, for
/// `vlx-install status --live` on any blade to read: no node gathers the
/// others' state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeLive {
    pub node: String,
    /// Seconds since the epoch when it was written (the node's clock,
    /// which chrony keeps with the others').
    pub at: u64,
    /// The IPv4 addresses on the cluster interface besides the node's own:
    /// the VIPs it holds.
    #[serde(default)]
    pub addresses: Vec<std::net::Ipv4Addr>,
    /// Whether the shared volume is mounted on it.
    #[serde(default)]
    pub shared: bool,
}

impl NodeLive {
    /// `None` for a block never written (all zeros).
    pub fn decode(block: &[u8]) -> Result<Option<NodeLive>, RecordError> {
        decode_block(block, LIVE_MAGIC)
    }
}

/// What the agent does with its store at boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The store was started on the current slot and image: use it.
    Keep,
    /// The store is fresh (reset or never booted): record the current
    /// slot, nothing is lost.
    Start,
    /// The store was started on another slot or image (or its record is
    /// missing or damaged): reset it, record the current slot. Everything
    /// the node wrote to its root is lost.
    Reset { was: Option<NodeRecord> },
}

/// The one rule of slot changes at boot: a store is kept only over the
/// slot and image it was started on. `store_fresh` is whether the store's
/// header is zero (a reset or new store).
pub fn decide(
    current: Slot,
    image: &SlotImage,
    record: Option<&NodeRecord>,
    store_fresh: bool,
) -> Decision {
    match record {
        Some(r) if r.slot == current && r.image_sha256 == image.image_sha256 => {
            if store_fresh {
                Decision::Start
            } else {
                Decision::Keep
            }
        }
        _ if store_fresh => Decision::Start,
        was => Decision::Reset { was: was.cloned() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn img(sha: &str) -> SlotImage {
        SlotImage {
            image_sha256: sha.repeat(64),
            name: "tiny".into(),
            version: "0.1.0".into(),
            kernel_release: "6.1.0".into(),
        }
    }

    fn rec(slot: Slot, sha: &str) -> NodeRecord {
        NodeRecord {
            node: "n1".into(),
            slot,
            image_sha256: sha.repeat(64),
        }
    }

    #[test]
    fn a_store_is_kept_only_over_the_slot_and_image_it_was_started_on() {
        let one = img("1");
        let cases = [
            (Some(rec(Slot::A, "1")), false, Decision::Keep),
            (Some(rec(Slot::A, "1")), true, Decision::Start),
            (None, true, Decision::Start),
            (Some(rec(Slot::B, "1")), true, Decision::Start),
            (
                Some(rec(Slot::B, "1")),
                false,
                Decision::Reset {
                    was: Some(rec(Slot::B, "1")),
                },
            ),
            // The same slot rewritten with another image (an upgrade after
            // a rollback) is another origin.
            (
                Some(rec(Slot::A, "2")),
                false,
                Decision::Reset {
                    was: Some(rec(Slot::A, "2")),
                },
            ),
            (None, false, Decision::Reset { was: None }),
        ];
        for (r, fresh, want) in cases {
            assert_eq!(
                decide(Slot::A, &one, r.as_ref(), fresh),
                want,
                "{r:?} {fresh}"
            );
        }
    }

    #[test]
    fn upgrade_and_rollback_swap_current_and_previous() {
        let t = SlotTable::install(img("1"));
        assert_eq!(t.rolled_back(), None, "nothing to roll back to");
        let u = t.upgraded(img("2"));
        assert_eq!((u.current, u.previous), (Slot::B, Some(Slot::A)));
        assert_eq!(u.current_image().unwrap(), &img("2"));
        let r = u.rolled_back().unwrap();
        assert_eq!((r.current, r.previous), (Slot::A, Some(Slot::B)));
        assert_eq!(r.current_image().unwrap(), &img("1"));
        // The next upgrade writes the slot rolled back from.
        let again = r.upgraded(img("3"));
        assert_eq!(again.current, Slot::B);
        assert_eq!(again.a, Some(img("1")));
        let back = SlotTable::from_json(&again.to_json()).unwrap();
        assert_eq!(back, again);
    }

    #[test]
    fn a_profile_has_one_or_two_slots() {
        let text = |slots: &str| {
            format!(
                "[cluster]\nname = \"t\"\nuuid = \"6f1c0a4e-3b8e-4d3a-9d2a-1f0e5c7b9a10\"\ndomain = \"t.test\"\n\
                 [network]\ncidr = \"10.0.0.0/24\"\nvips = [\"10.0.0.250\"]\n\
                 [[nodes]]\nname = \"n1\"\nmac = \"52:54:00:00:00:01\"\nip = \"10.0.0.1\"\n\
                 [san]\nsize = \"8GiB\"\n[storage]\n{slots}\n[image]\nhost = \"h.toml\"\n"
            )
        };
        let load = |t: &str| {
            crate::load(
                &crate::Source::new("t.toml", t),
                &crate::Trusting,
                crate::SanFacts::default(),
            )
        };
        let (_, one) = load(&text("")).unwrap();
        assert!(!one.disk.has_slots(), "one slot by default");
        let (_, two) = load(&text("slots = 2")).unwrap();
        assert!(two.disk.has_slots());
        for bad in ["slots = 3", "slots = 0", "slots = \"2\""] {
            let d = load(&text(bad)).unwrap_err().to_string();
            assert!(
                d.contains("t.toml:") && d.contains("storage.slots"),
                "{bad}: {d}"
            );
        }
    }

    #[test]
    fn records_round_trip_and_refuse_what_is_not_one() {
        let r = rec(Slot::B, "7");
        let bytes = r.encode();
        assert_eq!(bytes.len(), RECORD_BYTES);
        assert_eq!(NodeRecord::decode(&bytes), Ok(Some(r)));
        assert_eq!(NodeRecord::decode(&[0u8; RECORD_BYTES]), Ok(None));
        assert_eq!(
            NodeRecord::decode(b"SnAp\x01\x00\x00\x00"),
            Err(RecordError::Foreign)
        );
        let mut cut = bytes.clone();
        cut[RECORD_MAGIC.len() + 3] = b'#';
        assert!(matches!(
            NodeRecord::decode(&cut),
            Err(RecordError::Damaged(_))
        ));
    }
}

//! The USB image's disk: a GPT with two partitions, 1 MiB aligned, on
//! 512-byte sectors (what USB sticks report):
//!
//! | # | GPT name | type | what |
//! |---|---|---|---|
//! | 1 | `vlx-media-esp` | EFI system, legacy BIOS bootable | FAT32: systemd-boot, syslinux, the kernel and the installer's initramfs |
//! | 2 | `vlx-payload` | Linux file system data | ISO 9660: the payload |
//!
//! plus syslinux's `gptmbr.bin` as MBR boot code for BIOS. The layout is
//! planned here and encoded by `cluster::gpt::encode`, as the SAN's is.

use cluster::layout::{ATTR_LEGACY_BIOS_BOOTABLE, ENTRY_SIZE, MIN_ENTRIES, derived_guid, types};
use cluster::units::MIB;
use cluster::{Bytes, DiskLayout, Lba, Partition, Role, SectorSize};
use uuid::Uuid;

use crate::error::{Error, Result};

pub const ESP_LABEL: &str = contracts::names::label::MEDIA_ESP;
pub const PAYLOAD_LABEL: &str = contracts::names::label::PAYLOAD;

/// The layout for an ESP and a payload of these sizes, on a disk of `size`
/// (or just large enough); GUIDs derived from `seed`.
pub fn layout(esp: Bytes, payload: Bytes, size: Option<Bytes>, seed: Uuid) -> Result<DiskLayout> {
    let s = SectorSize::B512;
    let sector = s.bytes();
    let entry_lbas = MIN_ENTRIES * ENTRY_SIZE / sector;
    let esp = Bytes(esp.get().next_multiple_of(MIB));
    let payload = Bytes(payload.get().next_multiple_of(MIB));
    let start = MIB;
    let payload_start = start + esp.get();
    // The backup GPT takes the last entry_lbas + 1 sectors; a MiB leaves
    // room and keeps the end aligned.
    let need = Bytes(payload_start + payload.get() + MIB);
    let size = match size {
        None => need,
        Some(have) if have < need => {
            return Err(Error::Other(format!(
                "the payload does not fit: the USB image needs {need} (ESP {esp}, payload {payload}), but media.size is {have}"
            )));
        }
        Some(have) => Bytes(have.get() / sector * sector),
    };
    let lbas = size.get() / sector;
    let part =
        |number: u32, label: &str, role: Role, type_guid, first: u64, len: Bytes, attributes| {
            Partition {
                number,
                label: label.to_owned(),
                role,
                type_guid,
                guid: derived_guid(seed, label),
                first_lba: Lba(first / sector),
                last_lba: Lba((first + len.get()) / sector - 1),
                size: len,
                attributes,
            }
        };
    Ok(DiskLayout {
        sector_size: s,
        size,
        lbas,
        disk_guid: derived_guid(seed, "disk"),
        entries: MIN_ENTRIES as u32,
        first_usable: Lba(2 + entry_lbas),
        last_usable: Lba(lbas - 2 - entry_lbas),
        partitions: vec![
            part(
                1,
                ESP_LABEL,
                Role::Esp,
                types::ESP,
                start,
                esp,
                ATTR_LEGACY_BIOS_BOOTABLE,
            ),
            part(
                2,
                PAYLOAD_LABEL,
                Role::Payload,
                types::LINUX_FS,
                payload_start,
                payload,
                0,
            ),
        ],
        pool: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_follow_each_other_on_mib_boundaries() {
        let d = layout(Bytes::mib(64), Bytes(500_000_000), None, Uuid::nil()).unwrap();
        let esp = &d.partitions[0];
        let p = &d.partitions[1];
        assert_eq!(esp.first_lba, Lba(2048));
        assert_eq!(p.first_lba.0, esp.last_lba.0 + 1);
        assert_eq!(p.first_lba.0 * 512 % MIB, 0);
        assert!(p.size.get() >= 500_000_000);
        assert!(p.last_lba <= d.last_usable);
        let err = layout(
            Bytes::mib(64),
            Bytes::mib(500),
            Some(Bytes::mib(512)),
            Uuid::nil(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("does not fit") && err.contains("media.size"),
            "{err}"
        );
    }
}

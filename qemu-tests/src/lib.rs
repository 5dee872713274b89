//! vlx-rig: rehearses a whole-cluster install under QEMU.

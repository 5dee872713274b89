//! vlx-rig: rehearses a whole-cluster install under QEMU.
//!
//! The rig powers blades and watches their consoles; it never reaches into
//! a guest to fix anything. It knows what an installer and a node agent on
//! metal would know: the cluster profile, the SAN, the MACs of the blades.
//!
//! - [`plan`]: the rehearsal as a plain value (blades, QEMU command lines,
//!   steps) that prints and compares in tests.
//! - [`qemu`]: one blade's QEMU command line.
//! - Executors: [`run`] (the run's scratch directory, its processes and
//!   their cleanup, also on Ctrl-C), [`switch`] (the private L2 segment),
//!   [`blade`] (a powered blade with its consoles and QMP), [`console`]
//!   (timestamped console lines and waiting for markers), [`shell`] (the
//!   check channel on ttyS1), [`rehearse`] (the steps).
//! - [`iscsi`] plans and [`storage`] runs the storage network of an iSCSI
//!   rehearsal (tgt in a network namespace of its own); [`iscsi_install`]
//!   is its installer, in a guest on that network.
//! - [`report`]: timelines (JSON and SVG), consoles and the checks table.
//! - [`testkit`]: small kernels and initramfs images to test the rig itself.

pub mod accel;
pub mod answer;
pub mod blade;
pub mod bootcmd;
pub mod checks;
pub mod cli;
pub mod console;
pub mod firmware;
pub mod iscsi;
pub mod iscsi_install;
pub mod outside;
pub mod plan;
pub mod qemu;
pub mod qmp;
pub mod rehearse;
pub mod report;
pub mod run;
pub mod san;
pub mod shell;
pub mod ssh;
pub mod storage;
pub mod switch;
pub mod testkit;
pub mod tools;

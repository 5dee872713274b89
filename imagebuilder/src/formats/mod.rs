//! File formats the builder writes or reads itself, each with every field
//! under control for reproducible output: cpio (newc), ELF (the little the
//! library resolver reads), ext4 (through `mke2fs -d`), parallel gzip, tar
//! and ISO 9660 (with Rock Ridge and El Torito); and the tar reader that
//! extracts root tarballs beneath their root (`untar`).

pub mod cpio;
pub mod elf;
pub mod ext4;
pub mod iso;
pub mod pgz;
pub mod tarball;
pub mod untar;

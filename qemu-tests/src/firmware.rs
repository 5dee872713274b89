//! Firmware files on this machine.

use std::path::Path;

use crate::plan::Ovmf;

/// OVMF's code and variable-store template (Debian's `ovmf` package: the
/// 4 MiB build first, the older 2 MiB build if that is all there is).
pub fn ovmf() -> Option<Ovmf> {
    [
        ("OVMF_CODE_4M.fd", "OVMF_VARS_4M.fd"),
        ("OVMF_CODE.fd", "OVMF_VARS.fd"),
    ]
    .iter()
    .map(|(c, v)| {
        let dir = Path::new("/usr/share/OVMF");
        Ovmf {
            code: dir.join(c),
            vars_template: dir.join(v),
        }
    })
    .find(|o| o.code.is_file() && o.vars_template.is_file())
}

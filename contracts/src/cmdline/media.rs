//! The installer environment's `vlx.*` kernel arguments, as install media
//! write them ([`write`], from `vlx-image media`) or an administrator edits
//! them at the boot loader; the installer environment reads them
//! ([`parse`]).
//!
//! | argument | meaning |
//! |---|---|
//! | `vlx.media=<sha256>` | the payload is the one whose `vlx-media.json` has this sha256 (required) |
//! | `vlx.profile=<name>` | the cluster profile to install, by name |
//! | `vlx.target=<disk>` | the SAN: `/dev/NAME`, `NAME` or `serial:SERIAL` |
//! | `vlx.unattended=1` | ask nothing: needs `vlx.profile` (unless the media carry one) and `vlx.target` |
//! | `vlx.wipe=1` | overwrite a target that holds something else |
//!
//! Other `vlx.` arguments are errors (a typo must not turn an unattended
//! install into a guided one that waits forever); the rest of the line is
//! the kernel's.

use super::{PREFIX, ours, word};

/// What the kernel command line asks of the environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MediaArgs {
    pub media: String,
    pub profile: Option<String>,
    pub target: Option<String>,
    pub unattended: bool,
    pub wipe: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CmdlineError {
    #[error(
        "the kernel command line has no vlx.media=<sha256>: boot the install media's own entry"
    )]
    NoMedia,
    #[error("vlx.media={0}: not a sha256 (64 hex digits)")]
    BadMedia(String),
    #[error("{key}={value}: 0 or 1")]
    BadFlag { key: String, value: String },
    #[error(
        "{0}: not an argument of the installer environment (vlx.media, vlx.profile, vlx.target, vlx.unattended, vlx.wipe)"
    )]
    Unknown(String),
    #[error("{0}= is empty")]
    Empty(String),
}

/// The words a boot entry carries for `args`, `vlx.media=` first; the
/// flags only when set. [`parse`] reads them back to the same value.
pub fn write(args: &MediaArgs) -> Vec<String> {
    let mut w = vec![word("media", &args.media)];
    if args.unattended {
        w.push(word("unattended", 1));
    }
    if let Some(p) = &args.profile {
        w.push(word("profile", p));
    }
    if let Some(t) = &args.target {
        w.push(word("target", t));
    }
    if args.wipe {
        w.push(word("wipe", 1));
    }
    w
}

/// Parses `/proc/cmdline`; a key given twice takes its last value.
pub fn parse(line: &str) -> Result<MediaArgs, CmdlineError> {
    let mut a = MediaArgs::default();
    let mut media = None;
    for (key, value) in ours(line) {
        let full = format!("{PREFIX}{key}");
        let flag = |v: &str| match v {
            "1" | "" => Ok(true),
            "0" => Ok(false),
            _ => Err(CmdlineError::BadFlag {
                key: full.clone(),
                value: v.to_owned(),
            }),
        };
        let text = |v: &str| {
            if v.is_empty() {
                Err(CmdlineError::Empty(full.clone()))
            } else {
                Ok(v.to_owned())
            }
        };
        match key.as_str() {
            "media" => media = Some(value),
            "profile" => a.profile = Some(text(&value)?),
            "target" => a.target = Some(text(&value)?),
            "unattended" => a.unattended = flag(&value)?,
            "wipe" => a.wipe = flag(&value)?,
            _ => return Err(CmdlineError::Unknown(full)),
        }
    }
    let media = media.ok_or(CmdlineError::NoMedia)?;
    if media.len() != 64 || !media.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(CmdlineError::BadMedia(media));
    }
    a.media = media.to_ascii_lowercase();
    Ok(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "7eb47bfda9775cb92283a31c25fbd6054649e9ccf95fa89e8fc93bca138d2f24";

    #[test]
    fn reads_what_media_write() {
        let a = parse(&format!(
            "BOOT_IMAGE=/vlx/install/vmlinuz vlx.media={SHA} console=ttyS0,115200 vlx.unattended=1 vlx.profile=demo vlx.target=/dev/vdb"
        ))
        .unwrap();
        assert_eq!(
            a,
            MediaArgs {
                media: SHA.into(),
                profile: Some("demo".into()),
                target: Some("/dev/vdb".into()),
                unattended: true,
                wipe: false,
            }
        );
        let a = parse(&format!("vlx.media={SHA} vlx.wipe vlx.unattended=0")).unwrap();
        assert!(a.wipe && !a.unattended);
    }

    #[test]
    fn reads_back_what_it_writes() {
        let all = MediaArgs {
            media: SHA.into(),
            profile: Some("demo".into()),
            target: Some("serial:SAN0".into()),
            unattended: true,
            wipe: true,
        };
        let guided = MediaArgs {
            media: SHA.into(),
            ..MediaArgs::default()
        };
        for a in [all, guided] {
            let line = format!("console=ttyS0 {} quiet", write(&a).join(" "));
            assert_eq!(parse(&line), Ok(a), "{line}");
        }
    }

    #[test]
    fn errors_name_the_argument() {
        assert_eq!(parse("quiet"), Err(CmdlineError::NoMedia));
        assert_eq!(
            parse("vlx.media=abc"),
            Err(CmdlineError::BadMedia("abc".into()))
        );
        assert_eq!(
            parse(&format!("vlx.media={SHA} vlx.unatended=1")),
            Err(CmdlineError::Unknown("vlx.unatended".into()))
        );
        assert!(matches!(
            parse(&format!("vlx.media={SHA} vlx.unattended=yes")),
            Err(CmdlineError::BadFlag { .. })
        ));
        assert_eq!(
            parse(&format!("vlx.media={SHA} vlx.target=")),
            Err(CmdlineError::Empty("vlx.target".into()))
        );
    }
}

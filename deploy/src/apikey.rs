//! The write key of the local stack: kept in `.courser/api-key` (mode 0600) so that it
//! survives restarts and scripts can read it, and handed to every api instance.

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

use anyhow::{Context as _, bail};
use rand::Rng as _;

/// The key from `COURSER_API_KEY` if set, else the one in the key file, else a new one
/// (32 random bytes, hex); written to the key file in every case.
pub fn ensure(file: &Path) -> anyhow::Result<String> {
    let key = match std::env::var("COURSER_API_KEY") {
        Ok(key) if !key.is_empty() => {
            check(&key).context("COURSER_API_KEY")?;
            key
        }
        _ => match read(file)? {
            Some(key) => key,
            None => generate(),
        },
    };
    write(file, &key)?;
    Ok(key)
}

/// The key in the key file, if there is a valid one.
pub fn read(file: &Path) -> anyhow::Result<Option<String>> {
    match std::fs::read_to_string(file) {
        Ok(text) => {
            let key = text.trim();
            Ok(check(key).is_ok().then(|| key.to_owned()))
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err).with_context(|| format!("cannot read {}", file.display())),
    }
}

fn generate() -> String {
    let bytes: [u8; 32] = rand::rng().random();
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The api accepts keys of 16–256 visible ASCII characters.
fn check(key: &str) -> anyhow::Result<()> {
    if !(16..=256).contains(&key.len()) || !key.bytes().all(|b| b.is_ascii_graphic()) {
        bail!("a key must be 16–256 visible ASCII characters");
    }
    Ok(())
}

fn write(file: &Path, key: &str) -> anyhow::Result<()> {
    let context = || format!("cannot write {}", file.display());
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(file)
        .with_context(context)?;
    // `mode` only applies to a new file; an older one may have been made readable.
    out.set_permissions(std::fs::Permissions::from_mode(0o600))
        .with_context(context)?;
    writeln!(out, "{key}").with_context(context)
}

//! Finding the project's own binaries: next to the running `courser` first (the same
//! cargo target directory or install prefix, so debug runs debug), then on `PATH`.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use std::process::{Command, Stdio};

use anyhow::{Context as _, bail};

use crate::sysuser::is_root;

/// The path of the executable `name`, or an error saying how to build it.
pub fn find(name: &str) -> anyhow::Result<PathBuf> {
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(name)));
    if let Some(path) = beside.as_deref().filter(|path| is_executable(path)) {
        return Ok(path.to_path_buf());
    }
    if let Some(path) = on_path(name) {
        return Ok(path);
    }
    let beside = beside.map_or_else(String::new, |path| format!(" at {} nor", path.display()));
    bail!(
        "`{name}` was not found{beside} on PATH; build it with `cargo build --release` (or `cargo build` for debug binaries)"
    )
}

/// The first executable `name` in the directories of `PATH`.
pub fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path)
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// Installs a Debian package when we are root and have apt-get, saying so; `false` when
/// this machine cannot install it (the caller then names the package to install).
pub fn apt_install(package: &str, what: &str) -> anyhow::Result<bool> {
    if !is_root() || on_path("apt-get").is_none() {
        return Ok(false);
    }
    println!("{what} not found: installing Debian's `{package}` package");
    for args in [&["update"][..], &["install", "-y", package][..]] {
        let status = Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .status()
            .context("cannot run apt-get")?;
        if !status.success() {
            bail!("`apt-get {}` failed ({status})", args.join(" "));
        }
    }
    Ok(true)
}

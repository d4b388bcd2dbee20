//! The operating-system account that runs services which refuse to run as root
//! (Postgres): the current user, or, when we are root, an unprivileged system account.

use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context as _, bail};
use nix::unistd::{Gid, Uid, User};

/// The system account created when we are root and no `postgres` account exists.
const FALLBACK_ACCOUNT: &str = "courser";

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// An account to run commands as.
#[derive(Debug, Clone)]
pub struct RunAs {
    pub name: String,
    pub uid: Uid,
    pub gid: Gid,
    /// Whether commands must switch to this account (we are root) or already run as it.
    switch: bool,
}

impl RunAs {
    /// The account Postgres runs as: the current user, or when root the `postgres`
    /// account if it exists (Debian's package creates it), else `courser`. With `create`
    /// the `courser` account is made when needed; without it, `None` means no such
    /// account exists yet, so nothing can have been started as it.
    pub fn for_postgres(create: bool) -> anyhow::Result<Option<Self>> {
        if !is_root() {
            let uid = nix::unistd::geteuid();
            let name = User::from_uid(uid)
                .ok()
                .flatten()
                .map_or_else(|| uid.to_string(), |user| user.name);
            let gid = nix::unistd::getegid();
            return Ok(Some(Self {
                name,
                uid,
                gid,
                switch: false,
            }));
        }
        for name in ["postgres", FALLBACK_ACCOUNT] {
            if let Some(user) = lookup(name)? {
                return Ok(Some(Self::switching_to(user)));
            }
        }
        if !create {
            return Ok(None);
        }
        println!(
            "creating the system account `{FALLBACK_ACCOUNT}` to run Postgres (it refuses to run as root)"
        );
        run_quietly(Command::new("useradd").args([
            "--system",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            "/usr/sbin/nologin",
            "--user-group",
            FALLBACK_ACCOUNT,
        ]))
        .context("cannot create the system account `courser` (useradd)")?;
        match lookup(FALLBACK_ACCOUNT)? {
            Some(user) => Ok(Some(Self::switching_to(user))),
            None => bail!("useradd succeeded but the account `{FALLBACK_ACCOUNT}` is not there"),
        }
    }

    fn switching_to(user: User) -> Self {
        Self {
            name: user.name,
            uid: user.uid,
            gid: user.gid,
            switch: true,
        }
    }

    /// A command that runs as this account. When switching, it starts in `/`, since the
    /// account may not be allowed into the current directory; paths given must be absolute.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new(program);
        if self.switch {
            // std also drops the supplementary groups when a root parent sets the uid.
            command
                .uid(self.uid.as_raw())
                .gid(self.gid.as_raw())
                .current_dir("/");
        }
        command
    }

    /// Makes this account the owner of `path` (only needed, and only possible, as root).
    pub fn own(&self, path: &Path) -> anyhow::Result<()> {
        if self.switch {
            nix::unistd::chown(path, Some(self.uid), Some(self.gid))
                .with_context(|| format!("cannot give {} to `{}`", path.display(), self.name))?;
        }
        Ok(())
    }

    /// Makes this account the owner of everything under `dir` when `dir` itself is not
    /// yet theirs (e.g. made by an earlier run under another account).
    pub fn own_tree(&self, dir: &Path) -> anyhow::Result<()> {
        use std::os::unix::fs::MetadataExt as _;
        if !self.switch {
            return Ok(());
        }
        let meta =
            std::fs::metadata(dir).with_context(|| format!("cannot read {}", dir.display()))?;
        if meta.uid() == self.uid.as_raw() {
            return Ok(());
        }
        let owner = format!("{}:{}", self.uid, self.gid);
        run_quietly(Command::new("chown").arg("-R").arg(owner).arg(dir))
            .with_context(|| format!("cannot give {} to `{}`", dir.display(), self.name))
    }

    /// Whether this account can reach into `dir` (search permission on it and on every
    /// directory above it). Asked of the kernel by running `test -x` as the account,
    /// rather than re-implementing permission rules (groups, ACLs).
    pub fn can_enter(&self, dir: &Path) -> bool {
        self.command("test")
            .arg("-x")
            .arg(dir)
            .stdin(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    }
}

fn lookup(name: &str) -> anyhow::Result<Option<User>> {
    User::from_name(name).with_context(|| format!("cannot look up the account `{name}`"))
}

/// Runs a command to completion; its output goes into the error if it fails.
pub(crate) fn run_quietly(command: &mut Command) -> anyhow::Result<()> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {:?}", command.get_program()))?;
    if !output.status.success() {
        bail!(
            "{:?} failed ({}): {}{}",
            command.get_program(),
            output.status,
            String::from_utf8_lossy(&output.stdout).trim(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

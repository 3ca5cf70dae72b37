//! Which operating-system user runs the embedded server.
//!
//! `initdb` and `postgres` refuse to run as root. Run by a normal user, fleetmon runs them as
//! itself; run as root, it runs them as the unprivileged `postgres` system user (present wherever
//! Debian's or Ubuntu's server packages are installed), else `nobody`.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use nix::unistd::{Gid, Uid, User};

use super::EmbeddedError;

#[derive(Debug, Clone)]
pub struct ServiceUser {
    pub name: String,
    pub uid: Uid,
    pub gid: Gid,
    /// Whether fleetmon must switch to this user (it runs as root) or already is it.
    pub switch: bool,
}

impl ServiceUser {
    pub fn choose() -> Result<Self, EmbeddedError> {
        if !Uid::effective().is_root() {
            let uid = Uid::effective();
            let name = User::from_uid(uid)
                .ok()
                .flatten()
                .map_or_else(|| uid.to_string(), |u| u.name);
            return Ok(Self {
                name,
                uid,
                gid: Gid::effective(),
                switch: false,
            });
        }
        for name in ["postgres", "nobody"] {
            if let Ok(Some(user)) = User::from_name(name) {
                if !user.uid.is_root() {
                    return Ok(Self {
                        name: user.name,
                        uid: user.uid,
                        gid: user.gid,
                        switch: true,
                    });
                }
            }
        }
        Err(EmbeddedError::NoServiceUser)
    }

    /// Gives a directory fleetmon created to this user (a no-op unless running as root).
    pub fn take_ownership(&self, dir: &Path) -> Result<(), EmbeddedError> {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| EmbeddedError::io(format!("set permissions of {}", dir.display()), e))?;
        if self.switch {
            std::os::unix::fs::chown(dir, Some(self.uid.as_raw()), Some(self.gid.as_raw()))
                .map_err(|e| {
                    EmbeddedError::io(format!("give {} to {}", dir.display(), self.name), e)
                })?;
        }
        Ok(())
    }

    /// Checks the server will be able to reach `dir`: every ancestor must let this user search it.
    pub fn check_reachable(&self, dir: &Path) -> Result<(), EmbeddedError> {
        if !self.switch {
            return Ok(());
        }
        for ancestor in dir.ancestors().skip(1) {
            let meta = std::fs::metadata(ancestor)
                .map_err(|e| EmbeddedError::io(format!("inspect {}", ancestor.display()), e))?;
            let mode = meta.mode();
            let searchable = if meta.uid() == self.uid.as_raw() {
                mode & 0o100 != 0
            } else if meta.gid() == self.gid.as_raw() {
                mode & 0o010 != 0
            } else {
                mode & 0o001 != 0
            };
            if !searchable {
                return Err(EmbeddedError::Unreachable {
                    user: self.name.clone(),
                    data_dir: dir.to_path_buf(),
                    blocked_by: ancestor.to_path_buf(),
                });
            }
        }
        Ok(())
    }
}

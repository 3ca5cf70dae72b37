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

    /// Creates the data directory if it does not exist: private to fleetmon, but searchable by
    /// the service user when that is another user. An existing directory is left as it is.
    pub fn create_root(&self, dir: &Path) -> Result<(), EmbeddedError> {
        if dir.exists() {
            return Ok(());
        }
        std::fs::create_dir_all(dir)
            .map_err(|e| EmbeddedError::io(format!("create {}", dir.display()), e))?;
        let mode = if self.switch { 0o711 } else { 0o700 };
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
            .map_err(|e| EmbeddedError::io(format!("set permissions of {}", dir.display()), e))
    }

    /// Creates (or checks) a directory of the server's own inside the data directory, mode 0700
    /// and owned by this user. A symbolic link in its place is refused: as root, following it
    /// would hand whatever it points at to the service user.
    pub fn private_dir(&self, dir: &Path) -> Result<(), EmbeddedError> {
        match std::fs::symlink_metadata(dir) {
            Ok(meta) if !meta.file_type().is_dir() => {
                return Err(EmbeddedError::NotADirectory(dir.to_path_buf()))
            }
            Ok(_) => {}
            Err(_) => std::fs::create_dir(dir)
                .map_err(|e| EmbeddedError::io(format!("create {}", dir.display()), e))?,
        }
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| EmbeddedError::io(format!("set permissions of {}", dir.display()), e))?;
        if self.switch {
            std::os::unix::fs::lchown(dir, Some(self.uid.as_raw()), Some(self.gid.as_raw()))
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

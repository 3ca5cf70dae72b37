//! Finding the PostgreSQL server binaries installed on this machine.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::EmbeddedError;

/// The server binaries fleetmon will run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgBinaries {
    pub bindir: PathBuf,
    pub major_version: u32,
}

impl PgBinaries {
    pub fn initdb(&self) -> PathBuf {
        self.bindir.join("initdb")
    }

    pub fn postgres(&self) -> PathBuf {
        self.bindir.join("postgres")
    }
}

/// Where to look, in order: `PG_BINDIR`, then `pg_config --bindir`, then the newest
/// `<lib_root>/*/bin` (Debian and Ubuntu install servers under `/usr/lib/postgresql/<major>`).
#[derive(Debug, Clone)]
pub struct BinarySearch {
    pub pg_bindir: Option<PathBuf>,
    pub pg_config: PathBuf,
    pub lib_root: PathBuf,
}

impl BinarySearch {
    pub fn from_env() -> Self {
        Self {
            pg_bindir: std::env::var_os("PG_BINDIR")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
            pg_config: PathBuf::from("pg_config"),
            lib_root: PathBuf::from("/usr/lib/postgresql"),
        }
    }

    pub fn find(&self) -> Result<PgBinaries, EmbeddedError> {
        if let Some(dir) = &self.pg_bindir {
            // An explicit choice that does not work is an error, not a reason to look elsewhere.
            return inspect(dir)?.ok_or_else(|| EmbeddedError::BadBindir(dir.clone()));
        }
        if let Some(dir) = self.pg_config_bindir() {
            if let Some(found) = inspect(&dir)? {
                return Ok(found);
            }
        }
        for dir in self.lib_root_candidates() {
            if let Some(found) = inspect(&dir)? {
                return Ok(found);
            }
        }
        Err(EmbeddedError::NoBinaries {
            lib_root: self.lib_root.clone(),
        })
    }

    fn pg_config_bindir(&self) -> Option<PathBuf> {
        let output = Command::new(&self.pg_config)
            .arg("--bindir")
            .output()
            .ok()?;
        if !output.status.success() {
            return None;
        }
        let dir = String::from_utf8(output.stdout).ok()?;
        Some(PathBuf::from(dir.trim()))
    }

    /// `<lib_root>/<major>/bin`, newest major first.
    fn lib_root_candidates(&self) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(&self.lib_root) else {
            return Vec::new();
        };
        let mut versions: Vec<(u32, PathBuf)> = entries
            .filter_map(|entry| {
                let entry = entry.ok()?;
                let major = entry.file_name().to_str()?.parse::<u32>().ok()?;
                Some((major, entry.path().join("bin")))
            })
            .collect();
        versions.sort_by_key(|(major, _)| std::cmp::Reverse(*major));
        versions.into_iter().map(|(_, dir)| dir).collect()
    }
}

/// `Some` when `dir` holds a usable `initdb` and `postgres`.
fn inspect(dir: &Path) -> Result<Option<PgBinaries>, EmbeddedError> {
    if !dir.join("initdb").is_file() || !dir.join("postgres").is_file() {
        return Ok(None);
    }
    let output = Command::new(dir.join("postgres"))
        .arg("--version")
        .output()
        .map_err(|source| {
            EmbeddedError::io(format!("run {}/postgres --version", dir.display()), source)
        })?;
    let text = String::from_utf8_lossy(&output.stdout);
    let major_version = parse_major_version(&text).ok_or_else(|| {
        EmbeddedError::io(
            format!("understand `{}/postgres --version`", dir.display()),
            std::io::Error::other(text.trim().to_string()),
        )
    })?;
    if major_version < 14 {
        return Err(EmbeddedError::TooOld {
            bindir: dir.to_path_buf(),
            major_version,
        });
    }
    Ok(Some(PgBinaries {
        bindir: dir.to_path_buf(),
        major_version,
    }))
}

/// `postgres (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)` → 15.
fn parse_major_version(version_output: &str) -> Option<u32> {
    let number = version_output.split_whitespace().nth(2)?;
    let major = number.split(|c: char| !c.is_ascii_digit()).next()?;
    major.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn major_versions_parse_from_real_outputs() {
        assert_eq!(
            parse_major_version("postgres (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)\n"),
            Some(15)
        );
        assert_eq!(
            parse_major_version("postgres (PostgreSQL) 17beta1"),
            Some(17)
        );
        assert_eq!(parse_major_version("postgres (PostgreSQL) 14.11"), Some(14));
        assert_eq!(parse_major_version("garbage"), None);
    }
}

//! The pid file: written once the proxy serves, removed when it exits, unless a newer
//! process (a binary upgrade) has written its own pid there meanwhile.

use std::io;
use std::path::{Path, PathBuf};

/// A pid file holding this process's pid; removed on drop if it still holds it.
#[derive(Debug)]
pub struct PidFile {
    path: PathBuf,
    pid: u32,
}

impl PidFile {
    /// Writes this process's pid and a newline to `path`, atomically (a temporary file in
    /// the same directory renamed over it), so a reader never sees a partial pid.
    pub fn create(path: &Path) -> io::Result<Self> {
        let pid = std::process::id();
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(format!(".{pid}.tmp"));
        std::fs::write(&tmp, format!("{pid}\n"))?;
        std::fs::rename(&tmp, path).inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })?;
        Ok(Self {
            path: path.to_owned(),
            pid,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the pid in the file at `path`.
    pub fn read(path: &Path) -> io::Result<u32> {
        let text = std::fs::read_to_string(path)?;
        text.trim().parse().map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {:?} is not a pid", path.display(), text.trim()),
            )
        })
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        // After an upgrade the new process has replaced the file: leave its pid alone.
        if Self::read(&self.path).is_ok_and(|pid| pid == self.pid) {
            if let Err(error) = std::fs::remove_file(&self.path) {
                tracing::warn!(path = %self.path.display(), %error, "cannot remove the pid file");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn written_then_removed_unless_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lb.pid");
        let file = PidFile::create(&path).unwrap();
        assert_eq!(PidFile::read(&path).unwrap(), std::process::id());
        drop(file);
        assert!(!path.exists());

        let file = PidFile::create(&path).unwrap();
        std::fs::write(&path, "1\n").unwrap(); // A newer process took over.
        drop(file);
        assert_eq!(PidFile::read(&path).unwrap(), 1);
        std::fs::write(&path, "x").unwrap();
        assert!(PidFile::read(&path).is_err());
    }
}

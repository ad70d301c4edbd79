//! File paths in the configuration are relative to the configuration file.
//!
//! A file that names `certs/a.pem` means the `certs` directory next to it, wherever the
//! proxy is started from, as nginx does for its `conf` prefix. For text loaded with a bare
//! origin (`Config::from_toml_str(text, "lb.toml")`, no directory), relative paths stay
//! relative, that is relative to the current directory.

use std::path::{Path, PathBuf};

/// `path` as seen from the configuration read from `origin`: unchanged when absolute,
/// else joined to `origin`'s directory.
pub(crate) fn resolve(origin: &Path, path: &Path) -> PathBuf {
    match origin.parent() {
        Some(dir) if !path.is_absolute() => dir.join(path),
        _ => path.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_follow_the_config_file() {
        let origin = Path::new("/etc/lb/lb.toml");
        assert_eq!(
            resolve(origin, Path::new("certs/a.pem")),
            Path::new("/etc/lb/certs/a.pem")
        );
        assert_eq!(
            resolve(origin, Path::new("/srv/a.pem")),
            Path::new("/srv/a.pem")
        );
        // A bare origin has an empty directory: the path stays relative to the cwd.
        assert_eq!(
            resolve(Path::new("lb.toml"), Path::new("a.pem")),
            Path::new("a.pem")
        );
        assert_eq!(
            resolve(Path::new("conf/lb.toml"), Path::new("a.pem")),
            Path::new("conf/a.pem")
        );
    }
}

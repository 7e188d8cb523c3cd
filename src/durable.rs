//! Durable file writes: a file is either wholly the old one or wholly the new one, even after a
//! crash, and the new one is on disk when the call returns.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The mode of every file this tool writes: exports, receipts, plans and the simulator's
/// state hold personal data or describe it, so only the owner reads them.
pub const PRIVATE_FILE: u32 = 0o600;
/// The mode of every folder this tool creates for such files.
pub const PRIVATE_DIR: u32 = 0o700;

/// Creates `dir` and any missing parents with mode 0700, and makes `dir` itself 0700 when it
/// existed already (a folder made by an earlier version, or by hand).
///
/// # Errors
/// A folder cannot be created or its mode set.
pub fn create_private_dir_all(dir: &Path) -> io::Result<()> {
    fs::DirBuilder::new().recursive(true).mode(PRIVATE_DIR).create(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(PRIVATE_DIR))
}

/// Writes a new file (or replaces one) with mode 0600, not atomically: for files that are
/// complete before anything relies on them (the simulator's seeded documents).
///
/// # Errors
/// Any I/O error.
pub fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file =
        OpenOptions::new().write(true).create(true).truncate(true).mode(PRIVATE_FILE).open(path)?;
    file.write_all(bytes)?;
    fs::set_permissions(path, fs::Permissions::from_mode(PRIVATE_FILE))
}

/// Writes `bytes` to `path` atomically: a temporary file in the same directory, written and
/// fsynced, renamed over `path`, then the directory fsynced so the rename survives a crash.
///
/// # Errors
/// Any I/O error; the temporary file is removed and `path` is left as it was.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let temp = temp_path(path);
    let result = (|| {
        let mut file =
            OpenOptions::new().write(true).create_new(true).mode(PRIVATE_FILE).open(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&temp, path)?;
        sync_dir(&parent_dir(path))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}

/// [`write_atomically`] for content written in pieces: `fill` writes the temporary file (through
/// a buffer), which is then fsynced and renamed over `path`, and the directory fsynced. For files
/// too large to hold in memory (a plan of many contacts).
///
/// # Errors
/// Any I/O error, or one `fill` returns; the temporary file is removed and `path` is left as it
/// was.
pub fn write_atomically_with(
    path: &Path,
    fill: impl FnOnce(&mut io::BufWriter<&mut File>) -> io::Result<()>,
) -> io::Result<()> {
    let temp = temp_path(path);
    let result = (|| {
        let mut file =
            OpenOptions::new().write(true).create_new(true).mode(PRIVATE_FILE).open(&temp)?;
        let mut writer = io::BufWriter::with_capacity(1 << 16, &mut file);
        fill(&mut writer)?;
        writer.flush()?;
        drop(writer);
        file.sync_all()?;
        drop(file);
        fs::rename(&temp, path)?;
        sync_dir(&parent_dir(path))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}

/// A temporary name beside `path`, unique to this process and call (for a caller's own scratch
/// file, removed by the caller).
pub fn scratch_path(path: &Path) -> PathBuf {
    temp_path(path)
}

/// fsyncs a directory, so entries created or renamed in it survive a crash.
///
/// # Errors
/// The directory cannot be opened or synced.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The directory holding `path` (`.` for a bare file name).
pub fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
        _ => PathBuf::from("."),
    }
}

/// A temporary name beside `path`, unique to this process and call.
fn temp_path(path: &Path) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".tmp.{}.{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed)));
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_replaces_the_whole_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plan.json");
        write_atomically(&path, b"first, and longer").unwrap();
        write_atomically(&path, b"second").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"second");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_failed_write_leaves_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing-dir").join("plan.json");
        assert!(write_atomically(&path, b"x").is_err());
        assert!(!path.exists());
    }
}

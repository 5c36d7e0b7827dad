//! Anonymous temporary files, for request bodies past `inbuf_overflow` and
//! responses past `outbuf_overflow`. They hold what clients send and receive,
//! so no other local user may ever open one: on Linux `O_TMPFILE` makes a file
//! that never has a name; elsewhere, or on a filesystem without it, the file is
//! created mode 0600 with `O_EXCL` under an unguessable name and unlinked at
//! once; on Windows the OS deletes it when it is closed.

use std::fs::{File, OpenOptions};
use std::hash::{BuildHasher, Hasher, RandomState};
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A new anonymous file in `std::env::temp_dir()` (`TMPDIR`); a failure is
/// logged at WARNING with the directory and the OS error.
pub fn create() -> io::Result<File> {
    let dir = std::env::temp_dir();
    create_in(&dir).inspect_err(|e| warn("cannot create a temporary file", &dir, e))
}

/// Logs a failed write to a file from `create` (a full disk) at WARNING.
pub fn write_failed(e: &io::Error) {
    warn("cannot write a temporary file", &std::env::temp_dir(), e);
}

/// At most one WARNING a minute: with the directory gone or the disk full,
/// every connection past the overflow thresholds would log one.
fn warn(what: &str, dir: &Path, e: &io::Error) {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let next = NEXT.load(Ordering::Relaxed);
    if now >= next
        && NEXT
            .compare_exchange(next, now + 60, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        log::warn!(
            target: "maitre",
            "{what} in {}: {e}; until that works, request bodies past inbuf_overflow \
             are refused with 500 and responses past outbuf_overflow are held in memory",
            dir.display()
        );
    } else {
        log::debug!(target: "maitre", "{what} in {}: {e}", dir.display());
    }
}

fn create_in(dir: &Path) -> io::Result<File> {
    #[cfg(target_os = "linux")]
    match unnamed(dir) {
        Err(e) if no_tmpfile(&e) => {}
        result => return result,
    }
    named(dir)
}

#[cfg(target_os = "linux")]
fn unnamed(dir: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_TMPFILE)
        .mode(0o600)
        .open(dir)
}

/// The errors of a filesystem without `O_TMPFILE` (EOPNOTSUPP), or of a kernel
/// before 3.11, which sees only the `O_DIRECTORY` in it (EISDIR).
#[cfg(target_os = "linux")]
fn no_tmpfile(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::EISDIR))
}

/// Creates a file under a fresh random name (`O_EXCL`: never someone else's
/// file or symlink), then makes it anonymous.
fn named(dir: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.read(true).write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(windows)]
    {
        use std::os::windows::fs::OpenOptionsExt;
        const FILE_FLAG_DELETE_ON_CLOSE: u32 = 0x0400_0000;
        options.custom_flags(FILE_FLAG_DELETE_ON_CLOSE);
    }
    let mut collisions = 0;
    loop {
        let path = dir.join(random_name());
        match options.open(&path) {
            Ok(file) => {
                // An open descriptor keeps an unlinked file alive until it is closed.
                #[cfg(unix)]
                std::fs::remove_file(&path)?;
                return Ok(file);
            }
            // Only a name planted by someone guessing collides; don't loop forever.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && collisions < 8 => {
                collisions += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// SipHash under std's per-process random keys: not guessable from outside.
fn random_name() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    format!("maitre-{:016x}.tmp", hasher.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek, SeekFrom, Write};
    use std::path::PathBuf;

    /// An empty directory of the test's own, removed when dropped.
    struct TestDir(PathBuf);

    impl TestDir {
        fn new(name: &str) -> Self {
            let dir = std::env::temp_dir().join(format!("maitre-test-{name}-{}", random_name()));
            std::fs::create_dir(&dir).unwrap();
            TestDir(dir)
        }

        fn entries(&self) -> usize {
            std::fs::read_dir(&self.0).unwrap().count()
        }
    }

    impl Drop for TestDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn check_private_and_usable(mut file: File) {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = file.metadata().unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
        }
        file.write_all(b"request body").unwrap();
        file.seek(SeekFrom::Start(8)).unwrap();
        let mut back = String::new();
        file.read_to_string(&mut back).unwrap();
        assert_eq!(back, "body");
    }

    #[test]
    fn created_file_has_no_name_and_mode_0600() {
        let dir = TestDir::new("create");
        let file = create_in(&dir.0).unwrap();
        #[cfg(unix)]
        assert_eq!(
            dir.entries(),
            0,
            "no directory entry while the file is open"
        );
        check_private_and_usable(file);
    }

    #[test]
    fn named_fallback_is_0600_unguessable_and_unlinked_at_once() {
        let dir = TestDir::new("named");
        let (a, b) = (named(&dir.0).unwrap(), named(&dir.0).unwrap());
        #[cfg(unix)]
        assert_eq!(dir.entries(), 0, "unlinked while open");
        check_private_and_usable(a);
        check_private_and_usable(b);
        assert_ne!(random_name(), random_name());
    }

    #[test]
    fn missing_directory_is_an_error() {
        let dir = TestDir::new("missing");
        let gone = dir.0.join("gone");
        assert_eq!(
            create_in(&gone).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
    }
}

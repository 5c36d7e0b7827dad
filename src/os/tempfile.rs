//! Anonymous temporary files, for request bodies past `inbuf_overflow` and
//! responses past `outbuf_overflow`. They hold what clients send and receive,
//! so no other local user may ever open one: on Linux `O_TMPFILE` makes a file
//! that never has a name; elsewhere, or on a filesystem without it, the file is
//! created mode 0600 with `O_EXCL` under an unguessable name and unlinked at
//! once; on Windows the OS deletes it when it is closed.
//!
//! Spooled bodies reuse their files (`Pool`): a fresh file costs the kernel
//! its page-cache pages and its blocks for every body, and freeing them again
//! when it is closed; that was half the CPU of a 20 MiB upload.

use std::fs::{File, OpenOptions};
use std::hash::{BuildHasher, Hasher, RandomState};
use std::io::{self, Read, Seek, SeekFrom};
use std::mem::ManuallyDrop;
use std::ops::{Deref, DerefMut};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
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

/// Files kept between bodies, at most: enough for 16 uploads in turn, and
/// few descriptors (`limits::OWN_NEEDS` counts them).
const KEEP_FILES: usize = 16;
/// Bytes (file sizes) kept in all: disk and page cache no longer in use.
const KEEP_BYTES: u64 = 512 << 20;
/// A file larger than this is closed rather than kept: one huge upload
/// must not hold its disk space for the next small one.
const KEEP_LARGEST: u64 = 64 << 20;

/// Anonymous files that held request bodies, for the next ones. A reused
/// file keeps its old bytes past the new body's end: readers stop at the
/// body's length (`BodyReader`), and no one else can open the file. A file
/// no body took between two `age` calls (the loop's `cleanup_interval`) is
/// retired and closed by a worker (`close_retired`), which frees its pages
/// off the loop thread. One pool per process, shared by its servers, as a
/// memory allocator is.
pub struct Pool {
    state: Mutex<Kept>,
    /// `Kept::retired` is not empty: a worker has files to close.
    retired: AtomicBool,
}

struct Kept {
    /// (file, its size, taken or given back since the last `age`).
    idle: Vec<(File, u64, bool)>,
    bytes: u64,
    retired: Vec<File>,
}

/// The process's pool.
pub static POOL: Pool = Pool::new();

impl Pool {
    const fn new() -> Self {
        Pool {
            state: Mutex::new(Kept {
                idle: Vec::new(),
                bytes: 0,
                retired: Vec::new(),
            }),
            retired: AtomicBool::new(false),
        }
    }

    /// A kept file rewound to its start, else a new one (see `create`).
    pub fn take(&'static self) -> io::Result<Recycled> {
        let kept = self.lock().and_then(|mut k| {
            let (file, size, _) = k.idle.pop()?;
            k.bytes -= size;
            Some(file)
        });
        let file = match kept {
            Some(mut file) => {
                file.seek(SeekFrom::Start(0))?;
                file
            }
            None => create()?,
        };
        Ok(Recycled {
            file: ManuallyDrop::new(file),
            pool: self,
        })
    }

    fn give_back(&self, file: File) {
        let Ok(size) = file.metadata().map(|m| m.len()) else {
            return;
        };
        if size > KEEP_LARGEST {
            return;
        }
        // A file not kept is closed here, as it was before there was a pool.
        if let Some(mut k) = self.lock() {
            if k.idle.len() < KEEP_FILES && k.bytes + size <= KEEP_BYTES {
                k.bytes += size;
                k.idle.push((file, size, true));
            }
        }
    }

    /// Retires the files no body used since the last call.
    pub fn age(&self) {
        let Some(mut k) = self.lock() else { return };
        let kept = std::mem::take(&mut k.idle);
        for (file, size, used) in kept {
            if used {
                k.idle.push((file, size, false));
            } else {
                k.bytes -= size;
                k.retired.push(file);
            }
        }
        if !k.retired.is_empty() {
            self.retired.store(true, Ordering::Relaxed);
        }
    }

    /// Whether retired files wait for a worker to close them.
    pub fn has_retired(&self) -> bool {
        self.retired.load(Ordering::Relaxed)
    }

    /// Closes the retired files (their pages are freed now); callers ask
    /// `has_retired` first, without the lock.
    pub fn close_retired(&self) {
        let retired = self.lock().map(|mut k| {
            self.retired.store(false, Ordering::Relaxed);
            std::mem::take(&mut k.retired)
        });
        drop(retired);
    }

    /// The state; `None` only if a thread panicked holding the lock, and
    /// then the pool is bypassed rather than trusted.
    fn lock(&self) -> Option<std::sync::MutexGuard<'_, Kept>> {
        self.state.lock().ok()
    }
}

/// A file from the `Pool`, given back to it when dropped.
pub struct Recycled {
    file: ManuallyDrop<File>,
    pool: &'static Pool,
}

impl Deref for Recycled {
    type Target = File;
    fn deref(&self) -> &File {
        &self.file
    }
}

impl DerefMut for Recycled {
    fn deref_mut(&mut self) -> &mut File {
        &mut self.file
    }
}

impl Read for Recycled {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.file.read(buf)
    }
}

impl std::fmt::Debug for Recycled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.file.fmt(f)
    }
}

impl Drop for Recycled {
    fn drop(&mut self) {
        // SAFETY: `file` is taken once, here, and never touched after.
        let file = unsafe { ManuallyDrop::take(&mut self.file) };
        self.pool.give_back(file);
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

    /// A pool of the test's own: the process's is shared with other tests.
    fn pool() -> &'static Pool {
        Box::leak(Box::new(Pool::new()))
    }

    #[cfg(unix)]
    fn inode(file: &File) -> u64 {
        use std::os::unix::fs::MetadataExt;
        file.metadata().unwrap().ino()
    }

    #[test]
    #[cfg(unix)]
    fn a_file_given_back_is_taken_again_rewound() {
        let pool = pool();
        let mut file = pool.take().unwrap();
        file.write_all(b"a first, longer body").unwrap();
        let first = inode(&file);
        drop(file);
        let mut again = pool.take().unwrap();
        assert_eq!(inode(&again), first);
        assert_eq!(again.stream_position().unwrap(), 0);
        again.write_all(b"next").unwrap();
        // Two at once: the second is a new file.
        let other = pool.take().unwrap();
        assert_ne!(inode(&other), first);
    }

    #[test]
    fn the_pool_keeps_few_files_and_no_huge_one() {
        let pool = pool();
        let files: Vec<Recycled> = (0..KEEP_FILES + 2).map(|_| pool.take().unwrap()).collect();
        drop(files);
        assert_eq!(pool.lock().unwrap().idle.len(), KEEP_FILES);
        let huge = pool.take().unwrap();
        huge.set_len(KEEP_LARGEST + 1).unwrap(); // sparse: no disk used
        drop(huge);
        let k = pool.lock().unwrap();
        assert_eq!(k.idle.len(), KEEP_FILES - 1, "the huge one was not kept");
        assert_eq!(k.bytes, 0);
    }

    #[test]
    fn files_no_body_took_between_two_ages_are_retired_then_closed() {
        let pool = pool();
        let (a, b) = (pool.take().unwrap(), pool.take().unwrap());
        drop((a, b));
        pool.age();
        assert!(!pool.has_retired(), "both were used since the start");
        let used = pool.take().unwrap();
        drop(used);
        pool.age();
        assert!(pool.has_retired());
        assert_eq!(
            pool.lock().unwrap().idle.len(),
            1,
            "the one taken again stays"
        );
        pool.close_retired();
        assert!(!pool.has_retired());
        assert!(pool.lock().unwrap().retired.is_empty());
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

//! glibc malloc tuning for a server's allocation pattern.
//!
//! A request body or response of 64 KiB and up is allocated in one thread and
//! freed in another, over and over. glibc returns the top of a thread arena to
//! the kernel (`MADV_DONTNEED`) whenever a free of 64 KiB or more leaves more
//! than `M_TRIM_THRESHOLD` (128 KiB) unused there, so the next allocation
//! faults its pages in again: page faults were a quarter of all CPU time in a
//! 64 KiB POST echo, and tuning them away doubled its throughput. glibc raises
//! the thresholds by itself only after the app frees a block above 128 KiB.
//!
//! So, once per process, the thresholds are set where glibc's own adaptation
//! would take them after a 4 MiB block: blocks under 4 MiB come from the arenas,
//! and an arena keeps up to 8 MiB of free memory. Left alone when the operator
//! set either threshold (`MALLOC_*_THRESHOLD_`, `GLIBC_TUNABLES`). Other
//! platforms and C libraries are untouched.

/// Applies the tuning once; later calls do nothing. Returns whether it applied.
pub fn tune() -> bool {
    static APPLIED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *APPLIED.get_or_init(imp::tune)
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod imp {
    use std::os::raw::c_int;

    // From glibc's <malloc.h>.
    const M_TRIM_THRESHOLD: c_int = -1;
    const M_MMAP_THRESHOLD: c_int = -3;
    const MMAP_THRESHOLD: c_int = 4 << 20;
    const TRIM_THRESHOLD: c_int = 8 << 20;

    extern "C" {
        fn mallopt(param: c_int, value: c_int) -> c_int;
    }

    fn operator_tuned() -> bool {
        let tunables = std::env::var("GLIBC_TUNABLES").unwrap_or_default();
        std::env::var_os("MALLOC_TRIM_THRESHOLD_").is_some()
            || std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_some()
            || tunables.contains("glibc.malloc.trim_threshold")
            || tunables.contains("glibc.malloc.mmap_threshold")
    }

    pub fn tune() -> bool {
        if operator_tuned() {
            log::debug!(target: "maitre", "malloc thresholds set by the environment; left alone");
            return false;
        }
        // SAFETY: mallopt takes plain integers, is declared above exactly as in
        // <malloc.h>, and takes the allocator's own locks, so calling it while
        // other threads allocate is allowed.
        let ok = unsafe {
            mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
                && mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
        };
        log::debug!(
            target: "maitre",
            "malloc thresholds: mmap {MMAP_THRESHOLD} bytes, trim {TRIM_THRESHOLD} bytes (applied: {ok})"
        );
        ok
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
mod imp {
    pub fn tune() -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn applies_once_on_glibc() {
        let expected = cfg!(all(target_os = "linux", target_env = "gnu"))
            && std::env::var_os("MALLOC_TRIM_THRESHOLD_").is_none()
            && std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none()
            && std::env::var_os("GLIBC_TUNABLES").is_none();
        assert_eq!(super::tune(), expected);
        assert_eq!(
            super::tune(),
            expected,
            "a second call gives the same answer"
        );
    }
}

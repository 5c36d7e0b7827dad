//! The file descriptor limit a server needs: one per connection up to
//! `connection_limit`, plus its own. A soft `RLIMIT_NOFILE` below that is
//! raised (up to the hard limit); what is still short is logged with numbers,
//! since the symptom (accept failing with EMFILE under load) comes much later.

/// Descriptors the server holds besides its connections: listeners, the
/// event loop and its waker, Python's own files, logs, spooled bodies.
pub const OWN_NEEDS: u64 = 64;

#[cfg(unix)]
pub fn ensure_fds(connection_limit: usize) {
    // rlim_t is u64 on Linux and macOS, i64 on some BSDs.
    let needed = (connection_limit as u64 + OWN_NEEDS) as libc::rlim_t;
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a writable rlimit, as getrlimit expects.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return;
    }
    let (soft, hard) = (lim.rlim_cur, lim.rlim_max);
    if soft >= needed {
        return;
    }
    let raised = libc::rlimit {
        rlim_cur: lim.rlim_max,
        rlim_max: lim.rlim_max,
    };
    // SAFETY: `raised` is a valid rlimit; raising the soft limit up to the
    // hard one needs no privilege.
    let now = if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
        log::info!(
            target: "maitre",
            "raised the soft file descriptor limit from {soft} to {hard} (connection_limit={connection_limit} needs {needed})"
        );
        hard
    } else {
        soft
    };
    if now < needed {
        log::warn!(
            target: "maitre",
            "connection_limit={connection_limit} needs about {needed} file descriptors but this \
             process may open only {now} (hard limit {hard}): past about {} connections accepting \
             fails. Raise the hard limit (`ulimit -Hn`, LimitNOFILE= in systemd, nofile in \
             /etc/security/limits.conf) or lower connection_limit",
            now.saturating_sub(OWN_NEEDS as libc::rlim_t)
        );
    }
}

#[cfg(not(unix))]
pub fn ensure_fds(_connection_limit: usize) {}

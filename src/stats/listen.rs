//! What the kernel says about the listening sockets: the cap on any backlog
//! (`somaxconn`), the backlog in force and the accept queue's length (Linux
//! `TCP_INFO` on a listener: `tcpi_sacked` and `tcpi_unacked`), the
//! connections the kernel dropped on each listener (Linux `SO_MEMINFO`), and
//! the host's count of connections dropped from full accept queues.

use parking_lot::Mutex;

use crate::net::listener::Listener;

/// The kernel's cap on any listen backlog, where the OS tells it; `listen()`
/// silently clamps to it.
#[cfg(target_os = "linux")]
pub fn somaxconn() -> Option<i32> {
    std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()?
        .trim()
        .parse()
        .ok()
}

#[cfg(any(
    target_os = "macos",
    target_os = "freebsd",
    target_os = "openbsd",
    target_os = "netbsd",
    target_os = "dragonfly"
))]
pub fn somaxconn() -> Option<i32> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>();
    // SAFETY: the name is NUL-terminated; `value` and `len` describe a
    // writable c_int, as the sysctl expects; nothing is set (null new value).
    let rc = unsafe {
        libc::sysctlbyname(
            c"kern.ipc.somaxconn".as_ptr(),
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
            std::ptr::null_mut(),
            0,
        )
    };
    (rc == 0).then_some(value)
}

#[cfg(not(any(
    target_os = "linux",
    target_os = "macos",
    target_os = "freebsd",
    target_os = "openbsd",
    target_os = "netbsd",
    target_os = "dragonfly"
)))]
pub fn somaxconn() -> Option<i32> {
    None
}

/// The sysctl that raises the cap, as an operator types it.
pub fn somaxconn_sysctl(value: i32) -> String {
    if cfg!(target_os = "linux") {
        format!("sysctl -w net.core.somaxconn={value}")
    } else {
        format!("sysctl kern.ipc.somaxconn={value}")
    }
}

/// (accept queue length, backlog in force) of a listening socket.
#[cfg(target_os = "linux")]
fn queue_and_backlog(fd: std::os::fd::RawFd) -> Option<(u32, u32)> {
    // SAFETY: tcp_info is plain integers, so all-zero is a valid value.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: `info` and `len` describe a writable tcp_info; the kernel
    // writes at most `len` bytes. A closed or reused fd only makes it fail
    // or answer for another socket, never write elsewhere.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    (rc == 0).then_some((info.tcpi_unacked, info.tcpi_sacked))
}

/// Connections the kernel dropped on one TCP listener: `sk_drops`, which
/// `tcp_listendrop()` counts for each SYN or completed handshake it throws
/// away because the accept queue is full (the events `ListenOverflows` and
/// `ListenDrops` count for the whole host). A unix socket is not asked: a
/// connect to a full one fails (EAGAIN) or waits, so nothing is dropped.
#[cfg(target_os = "linux")]
fn listen_drops(fd: std::os::fd::RawFd) -> Option<u64> {
    let mut info = [0u32; libc::SK_MEMINFO_DROPS as usize + 1];
    let mut len = std::mem::size_of_val(&info) as libc::socklen_t;
    // SAFETY: `info` and `len` describe a writable array of u32, as
    // SO_MEMINFO fills; the kernel writes at most `len` bytes. A closed or
    // reused fd only makes it fail or answer for another socket.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_MEMINFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    // A kernel that predates the drops counter writes a shorter array.
    let whole = len as usize >= std::mem::size_of_val(&info);
    (rc == 0 && whole).then(|| u64::from(info[libc::SK_MEMINFO_DROPS as usize]))
}

/// Connections the whole host dropped because an accept queue was full
/// (`ListenOverflows` in /proc/net/netstat): not this server's alone.
#[cfg(target_os = "linux")]
pub fn host_listen_overflows() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/net/netstat").ok()?;
    let mut lines = text.lines().filter(|l| l.starts_with("TcpExt:"));
    let (names, values) = (lines.next()?, lines.next()?);
    let i = names
        .split_whitespace()
        .position(|n| n == "ListenOverflows")?;
    values.split_whitespace().nth(i)?.parse().ok()
}

#[cfg(not(target_os = "linux"))]
pub fn host_listen_overflows() -> Option<u64> {
    None
}

/// One listening socket, as reported.
#[derive(Clone, Debug)]
pub struct ListenerInfo {
    /// `ip:port`, `[ip6]:port` or `unix:PATH`.
    pub address: String,
    pub kind: &'static str,
    /// With `reuse_port`: the worker whose own socket this is.
    pub worker: Option<usize>,
    pub backlog_requested: i32,
    /// The backlog in force, read back from the socket where the OS tells,
    /// else what `somaxconn` leaves of the request.
    pub backlog_effective: Option<i32>,
    pub queue_length: Option<u32>,
    /// Connections the kernel dropped on this socket since it was bound
    /// (full accept queue): TCP on Linux only.
    pub drops: Option<u64>,
}

struct View {
    address: String,
    kind: &'static str,
    worker: Option<usize>,
    #[cfg(target_os = "linux")]
    fd: std::os::fd::RawFd,
}

/// Read access to the listening sockets for reports, from any thread. The
/// owner calls `forget` before it closes them, so a descriptor number that
/// the OS reuses is never asked about.
pub struct ListenViews {
    views: Mutex<Vec<View>>,
    backlog: i32,
    somaxconn: Option<i32>,
}

impl ListenViews {
    pub fn new(listeners: &[Listener], backlog: i32) -> ListenViews {
        let views = listeners
            .iter()
            .map(|l| View {
                address: l.shown(),
                kind: l.kind(),
                worker: l.worker,
                #[cfg(target_os = "linux")]
                fd: l.raw_fd(),
            })
            .collect();
        ListenViews {
            views: Mutex::new(views),
            backlog,
            somaxconn: somaxconn(),
        }
    }

    pub fn forget(&self) {
        self.views.lock().clear();
    }

    pub fn read(&self) -> Vec<ListenerInfo> {
        let clamped = match self.somaxconn {
            Some(max) => self.backlog.min(max),
            None => self.backlog,
        };
        self.views
            .lock()
            .iter()
            .map(|v| {
                #[cfg(target_os = "linux")]
                let kernel = queue_and_backlog(v.fd);
                #[cfg(target_os = "linux")]
                let drops = (v.kind == "tcp").then(|| listen_drops(v.fd)).flatten();
                #[cfg(not(target_os = "linux"))]
                let (kernel, drops): (Option<(u32, u32)>, _) = (None, None);
                ListenerInfo {
                    address: v.address.clone(),
                    kind: v.kind,
                    worker: v.worker,
                    backlog_requested: self.backlog,
                    backlog_effective: Some(
                        kernel.map_or(clamped, |(_, b)| i32::try_from(b).unwrap_or(i32::MAX)),
                    ),
                    queue_length: kernel.map(|(q, _)| q),
                    drops,
                }
            })
            .collect()
    }

    pub fn somaxconn(&self) -> Option<i32> {
        self.somaxconn
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn the_backlog_in_force_and_the_queue_are_read_back() {
        let addr = "127.0.0.1:0".parse().unwrap();
        let listener = Listener::bind(addr, 7).unwrap();
        let views = ListenViews::new(std::slice::from_ref(&listener), 7);
        let at = views.read()[0].address.clone();
        assert_eq!(views.read()[0].kind, "tcp");
        let clients: Vec<_> = (0..3)
            .map(|_| std::net::TcpStream::connect(&at).unwrap())
            .collect();
        std::thread::sleep(std::time::Duration::from_millis(50));
        let info = &views.read()[0];
        assert_eq!(info.backlog_effective, Some(7));
        assert_eq!(info.queue_length, Some(3));
        views.forget();
        assert!(views.read().is_empty());
        drop(clients);
    }

    #[test]
    fn a_full_accept_queue_counts_drops_on_its_listener() {
        let listener = Listener::bind("127.0.0.1:0".parse().unwrap(), 1).unwrap();
        let views = ListenViews::new(std::slice::from_ref(&listener), 1);
        assert_eq!(views.read()[0].drops, Some(0));
        let at: std::net::SocketAddr = views.read()[0].address.parse().unwrap();
        // Nobody accepts: past the backlog, the kernel drops the handshakes.
        let clients: Vec<_> = (0..10)
            .map(|_| {
                let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
                    .unwrap();
                s.set_nonblocking(true).unwrap();
                let _ = s.connect(&at.into());
                s
            })
            .collect();
        std::thread::sleep(std::time::Duration::from_millis(100));
        let drops = views.read()[0].drops.unwrap();
        assert!(drops > 0, "{drops}");
        drop(clients);
    }

    #[test]
    fn host_overflows_are_read() {
        assert!(host_listen_overflows().is_some());
    }
}

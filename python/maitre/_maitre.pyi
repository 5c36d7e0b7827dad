"""Type stubs for the compiled engine module ``maitre._maitre``."""

from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, TypedDict, Union

__version__: str

class _ListenerStats(TypedDict):
    address: str
    kind: str  # "tcp" or "unix"
    backlog_requested: int
    backlog_effective: Optional[int]  # read back from the socket (Linux), else min(requested, somaxconn)
    queue_length: Optional[int]  # connections waiting to be accepted now (Linux)
    drops: Optional[int]  # connections the kernel dropped on this socket, accept queue full (Linux, TCP)

class ListenerStats(_ListenerStats, total=False):
    worker: int  # with reuse_port: the worker process whose own socket (and queue) this is

class ConnectionStats(TypedDict):
    open: int
    active: int  # a request in progress or output to send
    idle: int  # waiting for a request, nothing buffered (idle keep-alive)
    accepted: int
    closed_by_client: int
    closed_by_timeout: int  # channel_timeout
    closed_by_header_timeout: int  # header_timeout: no whole request head (or body asked for) in time
    closed_by_error: int  # socket errors
    closed_by_server: int  # Connection: close, a bad request, stopping
    limit: int  # connection_limit
    accepting_paused: int  # processes paused at connection_limit now
    limit_pauses: int
    paused_seconds_total: float
    fd_paused: int  # processes paused for lack of file descriptors now
    fd_pauses: int

class RequestStats(TypedDict):
    total: int  # handed to the app
    waiting: int  # for a worker thread
    oldest_wait_seconds: float
    in_app: int
    by_status: Dict[str, int]  # "1xx" .. "5xx", the answers the server makes itself (400, 408, 413, 414, 431...) included
    bad_requests: int
    app_errors: int
    bytes_in: int
    bytes_out: int

class ThreadStats(TypedDict):
    total: int
    busy: int
    idle: int

class Histogram(TypedDict):
    bounds: List[float]  # upper bounds in seconds; a last bucket (+Inf) follows
    counts: List[int]  # per bucket, not cumulative: len(bounds) + 1
    sum: float
    count: int

class ProcessStats(TypedDict):
    connections: ConnectionStats
    requests: RequestStats
    threads: ThreadStats
    request_duration_seconds: Histogram
    queue_wait_seconds: Histogram

class WorkerStats(ProcessStats):
    worker: int  # its slot, 0 .. workers-1
    pid: int

class SupervisorStats(TypedDict):
    workers: int
    alive: int
    restarts: int

class _StatsDict(ProcessStats):
    pid: int
    draining: bool
    listeners: List[ListenerStats]
    somaxconn: Optional[int]
    listen_overflows_host: Optional[int]  # /proc/net/netstat ListenOverflows, every socket
    workers: List[WorkerStats]  # each worker process; empty with workers=1

class StatsDict(_StatsDict, total=False):
    supervisor: SupervisorStats  # with workers > 1

class Listeners:
    """The listening sockets, bound at construction (before any fork)."""

    def __init__(self, config: Dict[str, Any]) -> None: ...
    @property
    def effective_listen(self) -> List[Tuple[str, Union[int, str]]]:
        """`(ip, port)`, or `("unix", path)` for a Unix socket."""
    @property
    def effective_metrics(self) -> Optional[Tuple[str, int]]: ...
    def stats_json(self) -> str:
        """Every worker process's numbers (shared memory) and the sockets', as JSON."""
    def close(self) -> None: ...

class Engine:
    """The Rust server on ``listeners``; ``start`` runs the loop and worker threads."""

    def __init__(
        self,
        app: Callable[..., Any],
        config: Dict[str, Any],
        listeners: Listeners,
        worker_slot: int = 0,
    ) -> None: ...
    def start(self) -> None: ...
    def wait(self, timeout: Optional[float] = None) -> bool:
        """True once stopped, False after ``timeout`` seconds (None or inf: no limit;
        negative: poll; NaN: ``ValueError``)."""
    def close(self) -> None: ...
    def stats_json(self) -> str:
        """The live numbers as JSON: ``json.loads`` gives a :class:`StatsDict`."""

def set_parent_death_signal(signum: int) -> None:
    """Linux only: the kernel sends ``signum`` to this process when the thread that
    forked it exits (``PR_SET_PDEATHSIG``)."""

class FileWrapper:
    """``wsgi.file_wrapper``: iterates ``filelike`` in ``block_size`` blocks."""

    filelike: Any
    block_size: int
    def __init__(self, filelike: Any, block_size: int = 8192) -> None: ...
    def __iter__(self) -> Iterator[bytes]: ...
    def __next__(self) -> bytes: ...
    def close(self) -> None: ...

class InputStream:
    """``wsgi.input``."""

    def read(self, size: Optional[int] = None) -> bytes: ...
    def readline(self, size: Optional[int] = None) -> bytes: ...
    def readlines(self, hint: Optional[int] = None) -> List[bytes]: ...
    def __iter__(self) -> Iterator[bytes]: ...
    def __next__(self) -> bytes: ...

class StartResponse:
    """The ``start_response`` callable passed to the application."""

    def __call__(
        self,
        status: str,
        headers: List[Tuple[str, str]],
        exc_info: Optional[Any] = None,
    ) -> Callable[[bytes], None]: ...
    def write(self, data: bytes) -> None: ...

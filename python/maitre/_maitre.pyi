"""Type stubs for the compiled engine module ``maitre._maitre``."""

from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, Union

__version__: str

class Listeners:
    """The listening sockets, bound at construction (before any fork)."""

    def __init__(self, config: Dict[str, Any]) -> None: ...
    @property
    def effective_listen(self) -> List[Tuple[str, Union[int, str]]]:
        """`(ip, port)`, or `("unix", path)` for a Unix socket."""
    def close(self) -> None: ...

class Engine:
    """The Rust server on ``listeners``; ``start`` runs the loop and worker threads."""

    def __init__(
        self, app: Callable[..., Any], config: Dict[str, Any], listeners: Listeners
    ) -> None: ...
    def start(self) -> None: ...
    def wait(self, timeout: Optional[float] = None) -> bool:
        """True once stopped, False after ``timeout`` seconds (None or inf: no limit;
        negative: poll; NaN: ``ValueError``)."""
    def close(self) -> None: ...
    def stats(self) -> Dict[str, int]: ...

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

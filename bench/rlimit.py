"""The one file-descriptor helper the harness, the launchers and the idle helper share."""

import resource


def raise_nofile() -> int:
    """Soft RLIMIT_NOFILE up to the hard limit (the idle case holds thousands of
    sockets); returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]

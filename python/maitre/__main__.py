"""``python -m maitre [OPTIONS] MODULE:CALLABLE``: the same as ``maitre-serve``."""

import sys

from maitre.cli import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m maitre"))

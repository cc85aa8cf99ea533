"""``python -m roro``: the same as the ``roro`` console script (``roro`` itself is imported by
Python before this module runs, so a Ctrl-C during that import is Python's to report)."""

import sys

try:
    from .cli import main
except KeyboardInterrupt:
    sys.exit(130)

if __name__ == "__main__":
    main(prog_name="roro")

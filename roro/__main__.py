"""``python -m roro``: the same as the ``roro`` console script."""

from .cli import main

if __name__ == "__main__":
    main(prog_name="roro")

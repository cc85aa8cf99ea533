"""``python -m roro.cli``: the same as the ``roro`` console script."""

from . import main

if __name__ == "__main__":
    main(prog_name="roro")

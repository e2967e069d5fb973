"""``python -m flair_elmo_modes``: the ``flair-elmo`` command line."""

from flair_elmo_modes.cli import main

if __name__ == "__main__":
    raise SystemExit(main())

"""``python -m flair_elmo_modes``: the ``flair-elmo`` command line."""

from flair_elmo_modes.cli import main

raise SystemExit(main())

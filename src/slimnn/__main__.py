"""``python -m slimnn``: the slimnn command line (see :mod:`slimnn.cli`)."""

from .app.cli import main

raise SystemExit(main())

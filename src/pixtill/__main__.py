"""``python -m pixtill``: the command line."""

from __future__ import annotations

from pixtill.cli import main

raise SystemExit(main())

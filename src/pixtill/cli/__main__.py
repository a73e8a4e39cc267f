"""``python -m pixtill.cli`` runs the command line."""

from pixtill.cli import main

raise SystemExit(main())

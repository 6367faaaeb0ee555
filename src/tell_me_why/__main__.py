"""``python -m tell_me_why`` runs the ``tmw`` command."""

import sys

from .app.cli import main

sys.exit(main())

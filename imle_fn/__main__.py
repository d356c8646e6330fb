"""``python -m imle_fn`` runs the ``imle-fn`` command line."""

import sys

from imle_fn.apps.cli import main

sys.exit(main())

"""``python -m jaxgrpo.cli ...`` is the ``jaxgrpo`` command, like ``python -m jaxgrpo``."""
import sys

from . import main

sys.exit(main())

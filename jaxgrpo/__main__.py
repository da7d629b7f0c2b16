"""``python -m jaxgrpo ...`` is the ``jaxgrpo`` command (see ``jaxgrpo.cli``)."""
import sys

from .cli import main

sys.exit(main())

"""``python -m jpegfx``: the command line."""
import sys

from jpegfx.cli import main

sys.exit(main())

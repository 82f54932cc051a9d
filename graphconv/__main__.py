"""``python -m graphconv``: the graphconv command."""
import sys

from graphconv.cli import main

sys.exit(main())

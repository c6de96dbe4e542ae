"""``python -m deploy``: build, sign and roll out the model bundle."""

import sys

from deploy.cli import main

sys.exit(main())

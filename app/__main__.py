"""`python -m app` starts the playground (same as `python -m app.main`)."""

import sys

from app.main import main

sys.exit(main())

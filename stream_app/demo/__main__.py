"""``python -m stream_app.demo``: the demo `make run` runs."""

import sys

from stream_app.demo.run import main

sys.exit(main())

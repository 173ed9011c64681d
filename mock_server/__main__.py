"""`python -m mock_server`: the same as `chatconform serve`."""

import sys

from mock_server.cli import main

sys.exit(main())

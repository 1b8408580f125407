"""`python -m bookgen_operator`: the operator process (controller/main.py)."""

import sys

from bookgen_operator.controller.main import main

if __name__ == "__main__":
    sys.exit(main())

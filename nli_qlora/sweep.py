"""`python -m nli_qlora.sweep`: the command lives in nli_qlora.cli.sweep."""

import sys

from nli_qlora.cli.sweep import main

if __name__ == "__main__":
    sys.exit(main())

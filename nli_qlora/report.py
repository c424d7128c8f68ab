"""`python -m nli_qlora.report`: the command lives in nli_qlora.cli.report."""

import sys

from nli_qlora.cli.report import main

if __name__ == "__main__":
    sys.exit(main())

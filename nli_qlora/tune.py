"""`python -m nli_qlora.tune`: the command lives in nli_qlora.cli.tune."""

import sys

from nli_qlora.cli.tune import main

if __name__ == "__main__":
    sys.exit(main())

"""`python -m nli_qlora.train`: the command lives in nli_qlora.cli.train."""

import sys

from nli_qlora.cli.train import main

if __name__ == "__main__":
    sys.exit(main())

"""`python -m nli_qlora.score`: the command lives in nli_qlora.cli.score."""

import sys

from nli_qlora.cli.score import main

if __name__ == "__main__":
    sys.exit(main())

"""`python -m nli_qlora.tune`: the command lives in nli_qlora.tools.tune."""

import sys

from nli_qlora.tools.tune import main

if __name__ == "__main__":
    sys.exit(main())

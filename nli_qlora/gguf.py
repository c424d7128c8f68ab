"""`python -m nli_qlora.gguf`: the command lives in nli_qlora.cli.gguf."""

import sys

from nli_qlora.cli.gguf import main

if __name__ == "__main__":
    sys.exit(main())

"""`python -m nli_qlora.gguf`: the command lives in nli_qlora.cli.gguf."""

from nli_qlora.cli.gguf import main
from nli_qlora.infra.process_exit import exit_with

if __name__ == "__main__":
    exit_with(main())

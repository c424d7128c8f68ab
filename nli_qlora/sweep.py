"""`python -m nli_qlora.sweep`: the command lives in nli_qlora.cli.sweep."""

from nli_qlora.cli.sweep import main
from nli_qlora.infra.process_exit import exit_with

if __name__ == "__main__":
    exit_with(main())

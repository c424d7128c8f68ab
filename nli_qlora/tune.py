"""`python -m nli_qlora.tune`: the command lives in nli_qlora.cli.tune."""

from nli_qlora.cli.tune import main
from nli_qlora.infra.process_exit import exit_with

if __name__ == "__main__":
    exit_with(main())

"""`python -m nli_qlora.report`: the command lives in nli_qlora.cli.report."""

from nli_qlora.cli.report import main
from nli_qlora.infra.process_exit import exit_with

if __name__ == "__main__":
    exit_with(main())

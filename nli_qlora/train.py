"""`python -m nli_qlora.train`: the command lives in nli_qlora.cli.train."""

from nli_qlora.cli.train import main
from nli_qlora.infra.process_exit import exit_with

if __name__ == "__main__":
    exit_with(main())

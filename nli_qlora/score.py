"""`python -m nli_qlora.score`: the command lives in nli_qlora.cli.score."""

from nli_qlora.cli.score import main
from nli_qlora.infra.process_exit import exit_with

if __name__ == "__main__":
    exit_with(main())

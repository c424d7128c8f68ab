from nli_qlora.cli.train import main
from nli_qlora.infra.process_exit import exit_with

exit_with(main())

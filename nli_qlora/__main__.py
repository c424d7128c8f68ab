from nli_qlora.cli.train import main
import sys

sys.exit(main())

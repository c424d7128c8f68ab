from nli_qlora.train import main
import sys

sys.exit(main())

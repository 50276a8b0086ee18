import sys

from localnet.serve import main

sys.exit(main())

"""``python -m auto_review.oci ...``: the runtime's CLI without the top-level dispatcher."""

import sys

from auto_review.oci.cli import exit_process, main

exit_process(main(sys.argv[1:]))

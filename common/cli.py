"""Entry-point wrapper: user errors end with one clear line and exit status 2, never a deep traceback."""
from __future__ import annotations

import os
import sys
from typing import Callable

from hyper_params import UnknownDefaultsError

from . import dist, malloc
from .errors import UserError


def run_main(main: Callable[[], object]) -> None:
    """Run ``main``; under torchrun, leave the process group at the end. An error on one rank ends that process
    with its message (prefixed by the rank) and torchrun then stops the others. glibc keeps freed memory for
    reuse (:mod:`common.malloc`)."""
    malloc.configure()
    try:
        main()
    except (UserError, UnknownDefaultsError) as e:
        who = f" (rank {os.environ.get('RANK')} of {os.environ.get('WORLD_SIZE')})" if dist.launched() else ""
        print(f"error{who}: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted. A distillation run continues with --resume from its last checkpoint (written every "
              "--save_it iterations and at every evaluation): the iterations since then are done again",
              file=sys.stderr)
        sys.exit(130)
    dist.finish()

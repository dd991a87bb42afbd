"""Entry-point wrapper: user errors end with one clear line and exit status 2, never a deep traceback."""
from __future__ import annotations

import sys
from typing import Callable

from hyper_params import UnknownDefaultsError

from .errors import UserError


def run_main(main: Callable[[], object]) -> None:
    try:
        main()
    except (UserError, UnknownDefaultsError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted; continue the run with --resume", file=sys.stderr)
        sys.exit(130)

"""What function_app.py registers, read once per test process.

The Functions SDK builds its function list on the first `get_functions()` and refuses a second call (every function
would be "not unique"), so every test that inspects the app's functions asks here.
"""

from __future__ import annotations

import functools
from typing import Any


@functools.cache
def registered_functions() -> tuple[Any, ...]:
    import function_app

    return tuple(function_app.app.get_functions())

"""``customer-sync run`` with a bug planted in a normaliser, for the decoder-fault test.

Run as ``python -m tests.integration.faulty_service``. The text normaliser (``email``,
``name``, ...) raises ``KeyError`` for an address at ``@fault.example``: a genuine exception
from inside the decoder, as a bug would raise it, with no switch for it in the service's own
code. The service is otherwise the real one, started the real way.
"""

from __future__ import annotations

import sys
from typing import Any

from service.cli import main
from service.delivery import fields

FAULTY_DOMAIN = "@fault.example"
_text = fields.GUESS[fields.Target.TEXT]


def _buggy_text(value: Any) -> Any:
    if isinstance(value, str) and value.endswith(FAULTY_DOMAIN):
        return {}["a planted normaliser bug"]
    return _text(value)


if __name__ == "__main__":
    fields.GUESS[fields.Target.TEXT] = _buggy_text  # before the pipeline builds its decoder
    sys.exit(main(["run"]))

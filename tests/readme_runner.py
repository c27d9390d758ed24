"""The child side of tests/test_readme_blocks.py: one document's Python blocks, run in order.

Reads ``{"path": ..., "blocks": [{"line": n, "code": ..., "continues": bool}]}``
(JSON) on stdin and writes one entry per block to the file named by ``argv[1]``:
``null`` when the block ran, else its traceback. Each block runs in a fresh module
namespace, unless it ``continues`` the block before it, whose namespace it then
shares. Each block is compiled at its own line of the document, so tracebacks
point into it.
"""

from __future__ import annotations

import json
import sys
import traceback
import types


def main() -> None:
    request = json.load(sys.stdin)
    module = types.ModuleType("readme_blocks")
    results: list[str | None] = []
    for block in request["blocks"]:
        if not block["continues"]:
            module = types.ModuleType("readme_blocks")
            module.__file__ = request["path"]
            sys.modules[module.__name__] = module
        source = "\n" * (block["line"] - 1) + block["code"]
        try:
            exec(compile(source, request["path"], "exec"), module.__dict__)
        except BaseException:  # noqa: BLE001 (a failing block is the result, whatever it raised)
            results.append(traceback.format_exc())
        else:
            results.append(None)
        sys.stdout.flush()
    with open(sys.argv[1], "w", encoding="utf-8") as out:
        json.dump(results, out)


if __name__ == "__main__":
    main()

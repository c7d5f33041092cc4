"""The `azr` command line. Until the self-play trainer lands, `azr train` validates the identity
seed through the sandboxed executor and reports which isolation layers are active."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in ("train",):
        print("usage: azr train   (self-play lands with issue #4; today: validates the identity seed)")
        return 2
    from azr.executor import SandboxPool, validate

    with SandboxPool() as pool:
        v = validate(pool, "def f(x):\n    return x", "'Hello World'")
        layers = ", ".join(k for k, on in pool.info.layers.items() if on)
        print(f"sandbox layers: {layers}")
        print(f"identity seed: {'valid' if v.ok else 'INVALID ' + str(v.reason)}, output {v.output}")
    return 0 if v.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())

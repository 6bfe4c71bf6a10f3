"""The protocol layer stays pure: importing it pulls in no async runtime and no engine."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_importing_protocol_imports_neither_trio_nor_the_engine() -> None:
    code = textwrap.dedent(
        """
        import sys
        import omnirelay.protocol
        import omnirelay.protocol._dialects
        forbidden = sorted(
            name for name in sys.modules
            if name.split(".")[0]
            in {"trio", "anyio", "asyncio", "socket", "httpx", "quart", "hypercorn"}
            or name.startswith("omnirelay.engine")
            or name.startswith("omnirelay.plugins")
        )
        print(",".join(forbidden))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""

"""Your own Quart-Trio app with the omnirelay gateway mounted in it.

Run it with `hypercorn docs.examples.embedded_app:app --worker-class trio` (or any ASGI server
that runs Trio apps). Configuration comes from `omnirelay.toml` / the OMNIRELAY_* environment
variables as for `omnirelay serve`; here it is built in code.
"""

from __future__ import annotations

import os

from quart_trio import QuartTrio

from omnirelay.engine import OmniRelay, load_config

app = QuartTrio(__name__)


@app.get("/hello")
async def hello() -> dict[str, str]:
    return {"hello": "from your own route"}


# The gateway's routes (/ws, /api/..., /healthz, /metrics) are added to `app`, and its engine
# starts and stops with the app's lifespan.
relay = OmniRelay(app, config=load_config(os.environ.get("OMNIRELAY_CONFIG"), os.environ))

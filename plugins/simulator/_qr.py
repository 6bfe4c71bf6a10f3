"""Linking QR codes that look like WhatsApp Web's, as raw strings and as PNG data URLs.

WhatsApp Web's QR holds `2@<ref>,<noise key>,<identity key>,<adv secret>` (base64 parts);
Evolution and WAHA hand it out both raw and as a `data:image/png;base64,…` image, and the
`whatsapp:qr-updated` event shows the image. The image is rendered with `segno` (pure Python).
"""

from __future__ import annotations

import base64
import random

import segno

__all__ = ["qr_image_data_url", "qr_payload"]


def qr_payload(rng: random.Random) -> str:
    """A fresh QR string of WhatsApp Web's shape, drawn from `rng`."""
    ref = base64.b64encode(rng.randbytes(48)).decode("ascii")
    keys = [base64.b64encode(rng.randbytes(32)).decode("ascii") for _ in range(3)]
    return ",".join([f"2@{ref}", *keys])


def qr_image_data_url(payload: str) -> str:
    """`payload` as a PNG QR code in a `data:image/png;base64,…` URL (a few kilobytes).

    Costs about 15 ms of CPU in the calling thread. That is acceptable once per QR round
    (every few seconds); it is not moved to a worker thread because waiting on a thread would
    let a mock clock jump meanwhile and make the simulator's timestamps nondeterministic.
    """
    # make_qr, not make: a short payload would otherwise become a Micro QR phones cannot scan.
    return segno.make_qr(payload, error="l").png_data_uri(scale=4, border=4)

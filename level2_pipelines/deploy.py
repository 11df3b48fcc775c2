"""Deploy: make the running service serve a version, and confirm that it does.

The service follows the `champion` alias on its own (it polls the registry). Deploying tells it
to look now, through its admin endpoint, and waits until `GET /model` shows the version, so the
pipeline ends only when the new model is really in service. No service running is not an error:
the service loads the champion when it starts.
"""

import time

import httpx

from level2_pipelines.settings import Settings

CONFIRM_TIMEOUT_S = 15.0


def follow_in_service(settings: Settings, version: str) -> str:
    """Ask the service to reload and wait until it serves `version`; say what happened."""
    base = f"http://{settings.host}:{settings.port}"
    headers = {"Authorization": f"Bearer {settings.admin_token.get_secret_value()}"}
    try:
        httpx.post(f"{base}/admin/reload", headers=headers, timeout=CONFIRM_TIMEOUT_S)
    except httpx.TransportError:
        return f"service: not running at {base}; `make level2-serve` will serve v{version}"
    deadline, served = time.monotonic() + CONFIRM_TIMEOUT_S, None
    while time.monotonic() < deadline:
        served = httpx.get(f"{base}/model", timeout=5).json().get("version")
        if served == version:
            return f"service: {base} now serves v{version}"
        time.sleep(0.2)
    return f"service: {base} still serves v{served} after {CONFIRM_TIMEOUT_S:g} s (see its log)"

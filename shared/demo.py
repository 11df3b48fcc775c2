"""`make demo`: run each level end to end and show it answering the same request.

python -m shared.demo
"""

import json
import subprocess
import sys

import httpx

from shared.contract import EXAMPLE_PAYLOAD
from shared.paths import state_dir
from shared.servers import free_port, running_server


def banner(text: str) -> None:
    print(f"\n=== {text} " + "=" * max(0, 70 - len(text)), flush=True)


def run(*module_and_args: str) -> None:
    subprocess.run([sys.executable, "-m", *module_and_args], check=True)


def ask(base_url: str) -> dict:
    response = httpx.post(f"{base_url}/predict", json=EXAMPLE_PAYLOAD, timeout=10.0)
    print(f"POST {base_url}/predict -> {response.status_code}")
    print(json.dumps(response.json(), indent=2))
    return response.json()


def level0() -> None:
    banner("Level 0: manual notebook, pickle handed to a hand-made server")
    run("level0_notebook.run")
    port = free_port(preferred=8000)
    model = state_dir() / "level0" / "model.pkl"
    env = {"LEVEL0_MODEL_PATH": str(model), "LEVEL0_PORT": str(port)}
    print(f"serving {model} at 127.0.0.1:{port}; request: {json.dumps(EXAMPLE_PAYLOAD)}")
    with running_server("level0_notebook.serve", env, port) as base_url:
        ask(base_url)


def main() -> None:
    try:
        level0()
    except subprocess.CalledProcessError as error:
        sys.exit(f"demo: a step failed ({' '.join(error.cmd)}); its output is above")


if __name__ == "__main__":
    main()

"""`make demo`: run each level end to end, show them answering the same requests, and end
with the scorecard (its quick form: each level's tests are counted, not run; `make scorecard`
runs them).

python -m shared.demo
"""

import json
import subprocess
import sys
from contextlib import ExitStack

import httpx

from shared.contract import EXAMPLE_PAYLOAD, INVALID_EXAMPLES
from shared.paths import state_dir
from shared.servers import free_port, running_server


def banner(text: str) -> None:
    print(f"\n=== {text} " + "=" * max(0, 72 - len(text)), flush=True)


def step(*command: str) -> None:
    print(f"$ python {' '.join(command)}", flush=True)
    subprocess.run([sys.executable, *command], check=True)


def level0(stack: ExitStack) -> str:
    banner("Level 0: manual notebook, pickle handed to a hand-made server")
    step("-m", "level0_notebook.run")
    port = free_port(preferred=8000)
    env = {"LEVEL0_MODEL_PATH": str(state_dir() / "level0" / "model.pkl"), "LEVEL0_PORT": str(port)}
    return stack.enter_context(running_server("level0_notebook.serve", env, port))


def level1(stack: ExitStack) -> str:
    banner("Level 1: tested package, model card, explicit hand-off, validated API")
    step("-m", "pytest", "-q", "--no-header", "-p", "no:warnings", "level1_devops/tests")
    step("-m", "level1_devops.train")
    step("-m", "level1_devops.handoff")
    port = free_port(preferred=8001)
    env = {"LEVEL1_PORT": str(port)}
    return stack.enter_context(running_server("level1_devops.serve", env, port, "/health"))


def level2(stack: ExitStack) -> str:
    banner("Level 2: Prefect pipeline, GX validation, MLflow registry, champion-following service")
    step("-m", "level2_pipelines.run")
    port = free_port(preferred=8002)
    env = {"LEVEL2_PORT": str(port)}
    return stack.enter_context(running_server("level2_pipelines.serve", env, port, "/health"))


def compare(services: dict[str, str]) -> None:
    banner("The same requests to every level")
    print(f"request: {json.dumps(EXAMPLE_PAYLOAD)}")
    for name, url in services.items():
        response = httpx.post(f"{url}/predict", json=EXAMPLE_PAYLOAD, timeout=10)
        body = response.json()
        top = ", ".join(f"{k} {v:.4f}" for k, v in body["probabilities"].items())
        version = body.get("model_version", "(no version)")
        print(f"  {name}: {response.status_code} {body['species']} [{top}] model {version}")
    print("\ninvalid requests (status per level):")
    print(f"  {'example':<16}" + "".join(f"{name:>10}" for name in services))
    for example in INVALID_EXAMPLES:
        statuses = [
            httpx.post(
                f"{url}/predict",
                content=example.body,
                headers={"content-type": "application/json"},
                timeout=10,
            ).status_code
            for url in services.values()
        ]
        print(f"  {example.name:<16}" + "".join(f"{s:>10}" for s in statuses))


def main() -> None:
    try:
        with ExitStack() as stack:
            services = {
                "level 0": level0(stack),
                "level 1": level1(stack),
                "level 2": level2(stack),
            }
            compare(services)
        banner("The scorecard: the same probes against every level")
        step("-m", "shared.scorecard", "--quick")
    except subprocess.CalledProcessError as error:
        sys.exit(f"demo: a step failed ({' '.join(error.cmd[1:])}); its output is above")


if __name__ == "__main__":
    main()

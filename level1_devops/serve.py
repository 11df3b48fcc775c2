"""Serve the handed-off model: `make level1-serve`, or `python -m level1_devops.serve`.

Settings and the model are checked before the port is bound: an invalid setting, or a missing,
corrupt or mismatched model, is one clear line and a non-zero exit, not a traceback from inside
the server.
"""

import sys

import uvicorn
from pydantic import ValidationError

from level1_devops.api import create_app, load_served_model
from level1_devops.model import ModelLoadError
from level1_devops.settings import Settings


def main() -> None:
    try:
        settings = Settings()
    except ValidationError as error:
        sys.exit(f"level 1 serve: cannot start: {error.errors()[0]['msg']}")
    try:
        model = load_served_model(settings.serving_dir)
    except ModelLoadError as error:
        sys.exit(f"level 1 serve: cannot start: {error}")
    print(f"level 1 serve: model {model.card.version} at http://{settings.host}:{settings.port}")
    uvicorn.run(
        create_app(settings, model),
        host=settings.host,
        port=settings.port,
        access_log=settings.access_log,
    )


if __name__ == "__main__":
    main()

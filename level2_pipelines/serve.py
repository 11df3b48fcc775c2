"""Serve the registry's champion and follow it: `make level2-serve`, or
`python -m level2_pipelines.serve`.

Settings are checked before the port is bound (a placeholder admin token outside development is
one clear line and a non-zero exit), and so is the champion, if there is one yet.
"""

import sys

import uvicorn
from pydantic import ValidationError

from level2_pipelines.api import create_app
from level2_pipelines.settings import Settings


def main() -> None:
    try:
        settings = Settings()
    except ValidationError as error:
        sys.exit(f"level 2 serve: cannot start: {error.errors()[0]['msg']}")
    print(
        f"level 2 serve: following {settings.model_name}@champion at "
        f"http://{settings.host}:{settings.port}"
    )
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        access_log=settings.access_log,
    )


if __name__ == "__main__":
    main()

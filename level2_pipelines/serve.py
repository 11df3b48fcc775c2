"""Serve the registry's champion and follow it: `make level2-serve`, or
`python -m level2_pipelines.serve`.

Settings are checked before the port is bound: a placeholder admin token, or a host other
machines can reach without a token of your own, is one clear line and a non-zero exit. Without
LEVEL2_ADMIN_TOKEN the service makes a random token in the state folder (mode 0600), where the
pipeline and `make level2-rollback` on this machine find it.
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
    settings.admin_token_value(create=True)  # a random one in the state folder, if none is set
    app = create_app(settings)
    print(
        f"level 2 serve: following {settings.model_name}@champion at "
        f"http://{settings.host}:{settings.port}"
    )
    where = "LEVEL2_ADMIN_TOKEN" if settings.admin_token is not None else settings.admin_token_file
    print(f"level 2 serve: admin endpoints take the bearer token in {where}")
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        access_log=settings.access_log,
    )


if __name__ == "__main__":
    main()

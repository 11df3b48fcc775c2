"""Renamed: the pipeline's command line is `python -m level2_pipelines.pipeline_cli` (`make
level2`). This alias keeps the old command working for one release, as renamed make targets
do; remove it once no doc or script names `level2_pipelines.run`."""

from level2_pipelines.pipeline_cli import main

if __name__ == "__main__":
    main()

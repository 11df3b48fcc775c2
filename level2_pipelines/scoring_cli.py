"""Score one file with the champion from the command line (`make level2-score FILE=...`): the
flow runs on the local Prefect server when `make level2-up` runs one, else on a temporary one.

    python -m level2_pipelines.scoring_cli PATH [--force]
"""

import argparse
import sys
from contextlib import nullcontext
from pathlib import Path

from level2_pipelines import registry
from level2_pipelines.scoring import OUTPUTS, ScoringError, no_such_file, scoring_pipeline
from level2_pipelines.settings import Settings


def main() -> None:
    parser = argparse.ArgumentParser(description="Score a CSV or Parquet file with the champion.")
    parser.add_argument("file", help="the birds to score (the label column is not needed)")
    parser.add_argument("--force", action="store_true", help="replace earlier outputs")
    args = parser.parse_args()
    # Here, not at the top: a server probe needs no Prefect import of the flow.
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from level2_pipelines.ops.local_servers import local_prefect_server

    if not Path(args.file).is_file():  # said at once, before Prefect starts (the flow checks too)
        sys.exit(f"level 2 scoring: {no_such_file(Path(args.file))}")
    settings = Settings()
    server = local_prefect_server(settings)
    api = server or "temporary (started for this run)"
    print(f"level 2 scoring: Prefect API {api}", flush=True)
    with temporary_settings({PREFECT_API_URL: server}) if server else nullcontext():
        try:
            scored = scoring_pipeline(args.file, force=args.force)
        except (ScoringError, registry.RegistryError) as error:
            sys.exit(f"level 2 scoring: {error}")
    print(
        f"level 2 scoring: {scored.rows_scored} of {scored.rows} rows scored with "
        f"{scored.model_name} v{scored.model_version}, {scored.rows_rejected} rejected "
        f"(MLflow run {scored.scoring_run_id})\n"
        f"  predictions: {scored.predictions}\n"
        + (f"  rejected rows, with reasons: {scored.rejected}\n" if scored.rejected else "")
        + f"  lineage: {Path(scored.predictions).with_name(Path(scored.input).stem + OUTPUTS[2])}"
    )


if __name__ == "__main__":
    main()

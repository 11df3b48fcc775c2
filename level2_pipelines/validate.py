"""Validate: a Great Expectations suite over the contract, run on every batch before training.

One expectation per line, each with the risk it guards. Distribution bounds come from the
reference rows (the data the first model was trained on): a batch whose means or quantiles
move more than half a reference standard deviation is refused as drifted.
"""

from dataclasses import dataclass
from pathlib import Path

import great_expectations as gx
import great_expectations.expectations as gxe
import pandas as pd
from great_expectations.data_context.types.base import (
    DataContextConfig,
    InMemoryStoreBackendDefaults,
    ProgressBarsConfig,
)

from shared.contract import CATEGORIES, CLASSES, RANGES, TARGET
from shared.data import COLUMNS

DRIFT_STDS = 0.5  # how far a batch statistic may move, in reference standard deviations
MAX_NULL_SHARE = 0.05  # real data: 0.6% of measurements missing
MAX_SEX_NULL_SHARE = 0.10  # real data: 3.2% without a recorded sex
# The expectations a confirmed drift may set aside for its own column (see build_suite).
DRIFT_BOUNDS = (gxe.ExpectColumnMeanToBeBetween, gxe.ExpectColumnMedianToBeBetween)
NUMERIC_DTYPES = ["float64", "float32", "int64", "int32", "Float64", "Int64"]


class BatchRejected(RuntimeError):
    """The batch failed validation; the message lists the failed checks and where it is kept."""


@dataclass(frozen=True)
class ValidationReport:
    success: bool
    failed: list[str]  # one line per failed expectation: what, where, what was observed
    evaluated: int
    docs_index: Path | None


def build_suite(
    reference: pd.DataFrame, min_rows: int, deferred: set[str] = frozenset()
) -> gx.ExpectationSuite:
    """The expectations a batch must meet, with bounds from the reference rows. The drift
    bounds of the `deferred` columns are left out: the drift monitor confirmed that the world
    moved there, and the batch holds the rows to learn it from."""

    def near_reference(column: str, statistic: str) -> dict[str, float]:
        # Plain floats: numpy scalars in the kwargs break GX's result serialisation.
        centre = float(getattr(reference[column], statistic)())
        margin = DRIFT_STDS * float(reference[column].std())
        return {"min_value": centre - margin, "max_value": centre + margin}

    def physical(column: str) -> dict[str, float]:
        low, high = RANGES[column]
        return {"min_value": low, "max_value": high}

    suite = gx.ExpectationSuite(name="penguins-contract")
    for expectation in [
        # A renamed, missing or extra column: the export changed shape.
        gxe.ExpectTableColumnsToMatchSet(column_set=list(COLUMNS), exact_match=True),
        # A truncated export, or a batch too small to learn anything from.
        gxe.ExpectTableRowCountToBeBetween(min_value=min_rows, max_value=1_000_000),
        # Unlabelled birds cannot be trained on.
        gxe.ExpectColumnValuesToNotBeNull(column=TARGET),
        # A misspelt species would become a fourth class.
        gxe.ExpectColumnValuesToBeInSet(column=TARGET, value_set=list(CLASSES)),
        # Text in a measurement column ("n/a", "39,1"): the column stops being numeric.
        gxe.ExpectColumnValuesToBeInTypeList(column="bill_length_mm", type_list=NUMERIC_DTYPES),
        gxe.ExpectColumnValuesToBeInTypeList(column="bill_depth_mm", type_list=NUMERIC_DTYPES),
        gxe.ExpectColumnValuesToBeInTypeList(column="flipper_length_mm", type_list=NUMERIC_DTYPES),
        gxe.ExpectColumnValuesToBeInTypeList(column="body_mass_g", type_list=NUMERIC_DTYPES),
        # A broken sensor or join: far more missing measurements than the field ever has.
        gxe.ExpectColumnValuesToNotBeNull(column="bill_length_mm", mostly=1 - MAX_NULL_SHARE),
        gxe.ExpectColumnValuesToNotBeNull(column="bill_depth_mm", mostly=1 - MAX_NULL_SHARE),
        gxe.ExpectColumnValuesToNotBeNull(column="flipper_length_mm", mostly=1 - MAX_NULL_SHARE),
        gxe.ExpectColumnValuesToNotBeNull(column="body_mass_g", mostly=1 - MAX_NULL_SHARE),
        gxe.ExpectColumnValuesToNotBeNull(column="sex", mostly=1 - MAX_SEX_NULL_SHARE),
        # Wrong units or signs (cm for mm, kg for g, a minus sign): physically impossible values.
        gxe.ExpectColumnValuesToBeBetween(column="bill_length_mm", **physical("bill_length_mm")),
        gxe.ExpectColumnValuesToBeBetween(column="bill_depth_mm", **physical("bill_depth_mm")),
        gxe.ExpectColumnValuesToBeBetween(
            column="flipper_length_mm", **physical("flipper_length_mm")
        ),
        gxe.ExpectColumnValuesToBeBetween(column="body_mass_g", **physical("body_mass_g")),
        # A new island or a typo in one: categories the model has never seen.
        gxe.ExpectColumnValuesToBeInSet(column="island", value_set=list(CATEGORIES["island"])),
        gxe.ExpectColumnValuesToNotBeNull(column="island"),
        gxe.ExpectColumnValuesToBeInSet(column="sex", value_set=list(CATEGORIES["sex"])),
        # Drift: the birds measured are not like the birds the model learned from.
        gxe.ExpectColumnMeanToBeBetween(
            column="bill_length_mm", **near_reference("bill_length_mm", "mean")
        ),
        gxe.ExpectColumnMeanToBeBetween(
            column="bill_depth_mm", **near_reference("bill_depth_mm", "mean")
        ),
        gxe.ExpectColumnMeanToBeBetween(
            column="flipper_length_mm", **near_reference("flipper_length_mm", "mean")
        ),
        gxe.ExpectColumnMeanToBeBetween(
            column="body_mass_g", **near_reference("body_mass_g", "mean")
        ),
        # Drift in shape, not just centre: the middle bird moved even if outliers hid it.
        gxe.ExpectColumnMedianToBeBetween(
            column="bill_length_mm", **near_reference("bill_length_mm", "median")
        ),
        gxe.ExpectColumnMedianToBeBetween(
            column="bill_depth_mm", **near_reference("bill_depth_mm", "median")
        ),
        gxe.ExpectColumnMedianToBeBetween(
            column="flipper_length_mm", **near_reference("flipper_length_mm", "median")
        ),
        gxe.ExpectColumnMedianToBeBetween(
            column="body_mass_g", **near_reference("body_mass_g", "median")
        ),
    ]:
        if not (isinstance(expectation, DRIFT_BOUNDS) and expectation.column in deferred):
            suite.add_expectation(expectation)
    return suite


def _context(docs_dir: Path) -> gx.data_context.AbstractDataContext:
    """An ephemeral context (nothing persisted) that writes its HTML data docs to `docs_dir`."""
    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(),
        data_docs_sites={
            "level2": {
                "class_name": "SiteBuilder",
                "show_how_to_buttons": False,
                "store_backend": {
                    "class_name": "TupleFilesystemStoreBackend",
                    "base_directory": str(docs_dir),
                },
            }
        },
        analytics_enabled=False,  # offline: no usage statistics
        progress_bars=ProgressBarsConfig(globally=False),
    )
    return gx.get_context(mode="ephemeral", project_config=config)


def _describe(result) -> str:
    """One line for a failed expectation: which, on what, and what was observed instead."""
    config = result.expectation_config
    where = config.kwargs.get("column", "table")
    observed = result.result.get("observed_value")
    if observed is None and "unexpected_percent" in result.result:
        observed = f"{result.result['unexpected_percent']:.1f}% of rows outside"
    elif observed is None:
        # A metric that could not be computed (e.g. a mean of text): GX keeps its exception.
        info = result.exception_info
        messages = [i.get("exception_message") for i in info.values() if isinstance(i, dict)]
        messages.append(info.get("exception_message"))
        observed = "not computable: " + next((m for m in messages if m), "unknown error")[:100]
    return f"{config.type} on {where}: observed {observed}"


def validate_frame(
    frame: pd.DataFrame,
    reference: pd.DataFrame,
    min_rows: int,
    docs_dir: Path,
    batch_id: str,
    deferred: set[str] = frozenset(),
) -> ValidationReport:
    """Run the suite on `frame`; write the data docs; return what failed, one line each."""
    context = _context(docs_dir)
    batch_definition = (
        context.data_sources.add_pandas("penguins")
        .add_dataframe_asset(batch_id)
        .add_batch_definition_whole_dataframe("whole batch")
    )
    suite = context.suites.add(build_suite(reference, min_rows, deferred))
    validation = context.validation_definitions.add(
        gx.ValidationDefinition(name=f"validate {batch_id}", data=batch_definition, suite=suite)
    )
    checkpoint = context.checkpoints.add(
        gx.Checkpoint(
            name="before training",
            validation_definitions=[validation],
            actions=[gx.checkpoint.UpdateDataDocsAction(name="data docs")],
            result_format="SUMMARY",
        )
    )
    result = checkpoint.run(batch_parameters={"dataframe": frame})
    (suite_result,) = result.run_results.values()
    failed = [_describe(r) for r in suite_result.results if not r.success]
    index = docs_dir / "index.html"
    return ValidationReport(
        success=result.success,
        failed=failed,
        evaluated=len(suite_result.results),
        docs_index=index if index.exists() else None,
    )

"""Levels 1 and 2 keep the same stage in the same shape: what level 2 does not grow stays
identical to level 1, so `diff -r level1_devops level2_pipelines` reads as what level 2 adds.

Definitions are compared as source text (each level's package name written the same), by
top-level name, module against module: level 2 split level 1's `api.py` into the app, its
error answers (`errors.py`), its routes and what they share (`routes/deps.py`). A definition
both levels have is identical unless it is listed in GROWN, with what level 2 adds to it."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LEVEL1, LEVEL2 = ROOT / "level1_devops", ROOT / "level2_pipelines"

# (level 1 module, level 2 module) -> names that must be in both, identical: the floor that a
# rename at one level cannot drop silently out of the comparison.
KEPT = {
    ("data", "data"): {"training_split", "held_out_rows", "features_and_target"},
    ("model", "model"): {"build_classifier", "build_pipeline", "fingerprint", "TRUSTED_TYPES"},
    ("train", "train"): {"fit", "git_commit"},
    ("evaluate", "evaluate"): {"evaluate"},
    ("predict", "predict"): {"Predictor", "PipelinePredictor", "serving_predictor"},
    ("schemas", "schemas"): {"PenguinFeatures", "BatchRequest", "ErrorPublic", "FieldError"},
    ("api", "errors"): {"BodySizeLimit", "error_response", "validation_error_handler"},
    ("api", "routes/deps"): {"EXAMPLES", "ModelDep", "documented"},
    ("model_card", "model_card"): {"text", "add_table", "facts", "to_html", "STYLE"},
    ("api", "routes/card"): {"wants_html"},
}
# Definitions both levels have that level 2 grows, and what it adds.
GROWN = {
    ("model", "model"): {"ModelLoadError": "names a registry version, not a file"},
    ("train", "train"): {
        "record_training": "logs to an MLflow run instead of writing a model card",
        "training_rows": "reference rows plus the new batch",
    },
    ("schemas", "schemas"): {
        "ReadyPublic": "names a champion that could not be loaded",
        "SpeciesPrediction": "a prediction_id for the prediction log",
    },
    ("api", "routes/deps"): {
        "WHY": "the admin, feedback and registry statuses",
        "get_model": "says why no champion is served",
    },
    ("model_card", "model_card"): {
        "add_evaluation": "the candidate's metrics, as the gate judged them",
        "known_limits": "points to the live facts the service adds",
    },
    ("api", "routes/card"): {
        "HTML_HEADERS": "Vary is set per answer",
        "json_errors": "its own descriptions, beside routes/deps.WHY",
    },
}


def definitions(path: Path) -> dict[str, str]:
    """Top-level functions, classes and assignments by name, as source with the package name
    written the same for both levels."""
    source = path.read_text()
    found = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names = [node.name]
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names = [t.id for t in targets if isinstance(t, ast.Name)]
        else:
            continue
        text = ast.get_source_segment(source, node)
        text = text.replace("level1_devops", "PACKAGE").replace("level2_pipelines", "PACKAGE")
        found |= dict.fromkeys(names, text)
    return found


def pair_definitions(pair: tuple[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    return definitions(LEVEL1 / f"{pair[0]}.py"), definitions(LEVEL2 / f"{pair[1]}.py")


def test_predict_module_is_the_same_at_both_levels():
    """The serving path (fast numpy path, fallback, fingerprint) is one file at both levels."""
    level1 = (LEVEL1 / "predict.py").read_text().replace("level1_devops", "PACKAGE")
    level2 = (LEVEL2 / "predict.py").read_text().replace("level2_pipelines", "PACKAGE")

    assert level1 == level2, "level1_devops/predict.py and level2_pipelines/predict.py differ"


@pytest.mark.parametrize("pair", sorted(KEPT), ids="/".join)
def test_stage_definitions_both_levels_have_are_identical(pair):
    """Every definition both modules have is identical unless GROWN says what level 2 adds,
    and the KEPT ones are there to compare."""
    level1, level2 = pair_definitions(pair)
    grown = GROWN.get(pair, {})

    missing = sorted(KEPT[pair] - (level1.keys() & level2.keys()))
    drifted = sorted(
        name
        for name in (level1.keys() & level2.keys()) - grown.keys()
        if level1[name] != level2[name]
    )

    assert not missing, f"{pair}: no longer in both levels: {missing}"
    assert not drifted, (
        f"{pair}: {drifted} differ between the levels; make them the same again, or list them "
        "in GROWN with what level 2 adds"
    )


@pytest.mark.parametrize("pair", sorted(GROWN), ids="/".join)
def test_definitions_listed_as_grown_still_differ(pair):
    """GROWN lists only definitions both levels have and level 2 really changed, so it cannot
    hide one that could be kept identical."""
    level1, level2 = pair_definitions(pair)

    stale = sorted(
        name
        for name in GROWN[pair]
        if name not in level1 or name not in level2 or level1[name] == level2[name]
    )

    assert not stale, f"{pair}: listed as grown but missing or identical: {stale}"

"""The model's quality and behaviour on held-out rows and archetypal penguins.

Quality: a floor on held-out metrics. Behaviour (after Ribeiro et al., "Beyond Accuracy"):
minimum functionality (archetypes right), invariance (noise below measurement precision changes
nothing), directional expectations (moving towards a species' shape raises its probability).
"""

import numpy as np
import pandas as pd
import pytest

from level1_devops.evaluate import evaluate
from shared.contract import CLASSES, EXPECTED_SPECIES, FEATURES, VALID_EXAMPLES

MACRO_F1_FLOOR = 0.95
PER_CLASS_F1_FLOOR = 0.90


def probabilities(pipeline, **changes) -> dict[str, float]:
    """P(species) for the Adelie archetype with `changes` applied."""
    row = pd.DataFrame([{**VALID_EXAMPLES["adelie"], **changes}])
    return dict(zip(pipeline.classes_, pipeline.predict_proba(row)[0], strict=True))


def test_macro_f1_on_held_out_rows_meets_the_floor(pipeline, held_out):
    """Macro F1 on the 69 held-out penguins is at least 0.95."""
    assert evaluate(pipeline, held_out)["macro_f1"] >= MACRO_F1_FLOOR


def test_every_species_meets_the_per_class_floor(pipeline, held_out):
    """No species is sacrificed for the others: each F1 is at least 0.90."""
    metrics = evaluate(pipeline, held_out)

    assert min(metrics[f"f1_{species}"] for species in CLASSES) >= PER_CLASS_F1_FLOOR


@pytest.mark.parametrize("name", sorted(EXPECTED_SPECIES))
def test_archetype_is_its_species(pipeline, name):
    """Minimum functionality: each archetypal bird is classified as its species."""
    row = pd.DataFrame([VALID_EXAMPLES[name]])

    assert pipeline.predict(row)[0] == EXPECTED_SPECIES[name]


def test_missing_sex_still_classified(pipeline):
    """Minimum functionality: a bird with no recorded sex (a real Adelie) is still an Adelie."""
    row = pd.DataFrame([VALID_EXAMPLES["sex_missing"]]).reindex(columns=list(FEATURES))

    assert pipeline.predict(row)[0] == "Adelie"


@pytest.mark.parametrize("name", sorted(EXPECTED_SPECIES))
def test_noise_below_measurement_precision_changes_nothing(pipeline, name):
    """Invariance: +-0.1 mm on bills and flippers and +-25 g on mass keep the species."""
    rng = np.random.default_rng(0)
    base = VALID_EXAMPLES[name]
    rows = pd.DataFrame(
        [
            {
                **base,
                "bill_length_mm": base["bill_length_mm"] + rng.choice([-0.1, 0.1]),
                "bill_depth_mm": base["bill_depth_mm"] + rng.choice([-0.1, 0.1]),
                "flipper_length_mm": base["flipper_length_mm"] + rng.choice([-1.0, 1.0]),
                "body_mass_g": base["body_mass_g"] + rng.choice([-25.0, 25.0]),
            }
            for _ in range(20)
        ]
    )

    assert set(pipeline.predict(rows)) == {EXPECTED_SPECIES[name]}


def test_longer_bill_moves_adelie_towards_chinstrap(pipeline):
    """Directional: on Dream, a longer bill raises P(Chinstrap) step by step."""
    steps = [
        probabilities(pipeline, island="Dream", bill_length_mm=b)["Chinstrap"]
        for b in (39.0, 43.0, 47.0, 51.0)
    ]

    assert steps == sorted(steps)
    assert steps[-1] > 0.5


def test_gentoo_shape_raises_p_gentoo(pipeline):
    """Directional: a shallower bill, longer flipper and heavier body raise P(Gentoo)."""
    adelie = probabilities(pipeline, island="Biscoe")["Gentoo"]
    gentoo_like = probabilities(
        pipeline, island="Biscoe", bill_depth_mm=14.0, flipper_length_mm=215.0, body_mass_g=5200.0
    )["Gentoo"]

    assert gentoo_like > adelie
    assert gentoo_like > 0.5

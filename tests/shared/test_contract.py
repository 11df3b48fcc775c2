"""The contract is consistent: its ranges fit the real birds, its examples mean what they say."""

import json

from shared.contract import (
    CATEGORIES,
    EXPECTED_SPECIES,
    FEATURES,
    INVALID_EXAMPLES,
    OPTIONAL_FEATURES,
    RANGES,
    VALID_EXAMPLES,
)
from shared.data import load_penguins


def test_ranges_admit_every_real_penguin():
    """No measured bird falls outside the plausible ranges, so the contract refuses no real one."""
    penguins = load_penguins()

    for feature, (low, high) in RANGES.items():
        assert penguins[feature].dropna().between(low, high).all(), feature


def test_categories_cover_the_real_data():
    """Every island and sex in the data is an allowed category."""
    penguins = load_penguins()

    for feature, allowed in CATEGORIES.items():
        assert set(penguins[feature].dropna()) == set(allowed), feature


def test_valid_examples_respect_the_contract():
    """Each valid example has every required feature, in range and in category."""
    for name, payload in VALID_EXAMPLES.items():
        required = set(FEATURES) - set(OPTIONAL_FEATURES)
        assert required <= set(payload) <= set(FEATURES), name
        for feature, (low, high) in RANGES.items():
            assert low <= payload[feature] <= high, (name, feature)
        for feature, allowed in CATEGORIES.items():
            assert payload.get(feature, allowed[0]) in allowed, (name, feature)


def test_expected_species_examples_are_measured_birds():
    """The archetypes are real rows of their species, so 'minimum functionality' is honest."""
    penguins = load_penguins()

    for name, species in EXPECTED_SPECIES.items():
        payload = VALID_EXAMPLES[name]
        match = penguins
        for feature, value in payload.items():
            match = match[match[feature] == value]
        assert set(match["species"]) == {species}, name


def test_invalid_examples_have_unique_names_and_a_field():
    """Each invalid example is named once and names the field an error must mention."""
    names = [example.name for example in INVALID_EXAMPLES]

    assert len(names) == len(set(names))
    assert all(example.field for example in INVALID_EXAMPLES)


def test_invalid_json_examples_break_their_own_field():
    """Each JSON invalid example differs from a valid payload exactly at its named field."""
    valid = VALID_EXAMPLES["adelie"]

    for example in INVALID_EXAMPLES:
        if example.field == "body":
            continue
        body = json.loads(example.body)
        changed = {k for k in set(body) | set(valid) if body.get(k, ...) != valid.get(k, ...)}
        assert changed == {example.field}, example.name

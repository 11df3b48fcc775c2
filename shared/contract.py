"""The serving and data contract every level is held to.

Feature names and types, allowed categories, plausible physical ranges and the target classes,
plus example payloads: valid ones that every service must answer, and invalid ones that a
mature service must refuse with a 4xx naming the field (level 0 does not, and the scorecard
shows it).
"""

import json
from dataclasses import dataclass
from typing import Any

TARGET = "species"
CLASSES: tuple[str, ...] = ("Adelie", "Chinstrap", "Gentoo")

NUMERIC_FEATURES: tuple[str, ...] = (
    "bill_length_mm",
    "bill_depth_mm",
    "flipper_length_mm",
    "body_mass_g",
)
CATEGORICAL_FEATURES: tuple[str, ...] = ("island", "sex")
FEATURES: tuple[str, ...] = (*NUMERIC_FEATURES, *CATEGORICAL_FEATURES)

CATEGORIES: dict[str, tuple[str, ...]] = {
    "island": ("Biscoe", "Dream", "Torgersen"),
    "sex": ("female", "male"),
}
# Features a request may leave out or set to null: the model imputes them.
OPTIONAL_FEATURES: tuple[str, ...] = ("sex",)

# Physically plausible for an adult penguin of these species: wider than anything measured
# (bill 32.1-59.6 mm, depth 13.1-21.5 mm, flipper 172-231 mm, mass 2700-6300 g), so a real
# bird is never refused while a typo (grams as kilograms, a negative) is.
RANGES: dict[str, tuple[float, float]] = {
    "bill_length_mm": (25.0, 75.0),
    "bill_depth_mm": (10.0, 25.0),
    "flipper_length_mm": (150.0, 250.0),
    "body_mass_g": (2000.0, 7500.0),
}

# One archetypal bird per species (measured birds from the data set), and one without sex.
VALID_EXAMPLES: dict[str, dict[str, Any]] = {
    "adelie": {
        "bill_length_mm": 39.1,
        "bill_depth_mm": 18.7,
        "flipper_length_mm": 181.0,
        "body_mass_g": 3750.0,
        "island": "Torgersen",
        "sex": "male",
    },
    "chinstrap": {
        "bill_length_mm": 46.5,
        "bill_depth_mm": 17.9,
        "flipper_length_mm": 192.0,
        "body_mass_g": 3500.0,
        "island": "Dream",
        "sex": "female",
    },
    "gentoo": {
        "bill_length_mm": 46.1,
        "bill_depth_mm": 13.2,
        "flipper_length_mm": 211.0,
        "body_mass_g": 4500.0,
        "island": "Biscoe",
        "sex": "female",
    },
    "sex_missing": {
        "bill_length_mm": 37.8,
        "bill_depth_mm": 17.1,
        "flipper_length_mm": 186.0,
        "body_mass_g": 3300.0,
        "island": "Torgersen",
    },
}
EXAMPLE_PAYLOAD = VALID_EXAMPLES["adelie"]
EXPECTED_SPECIES = {"adelie": "Adelie", "chinstrap": "Chinstrap", "gentoo": "Gentoo"}


@dataclass(frozen=True)
class InvalidExample:
    """A request body a service must refuse, and the field its error message must name."""

    name: str
    body: bytes
    field: str
    why: str


_DROP = object()  # marks a field to leave out of an invalid example


def _with(**changes: Any) -> bytes:
    payload = {**EXAMPLE_PAYLOAD, **changes}
    return json.dumps({k: v for k, v in payload.items() if v is not _DROP}).encode()


# Bounded at 1 MiB + 1 byte: beyond any honest single-penguin request, small enough for tests.
HUGE_BODY_BYTES = 1024 * 1024 + 1

INVALID_EXAMPLES: tuple[InvalidExample, ...] = (
    InvalidExample(
        "wrong_type", _with(bill_length_mm="long"), "bill_length_mm", "a word where mm are due"
    ),
    InvalidExample("unknown_island", _with(island="Atlantis"), "island", "not an island surveyed"),
    InvalidExample("negative_mass", _with(body_mass_g=-3750.0), "body_mass_g", "mass below zero"),
    InvalidExample(
        "out_of_range", _with(flipper_length_mm=1810.0), "flipper_length_mm", "cm read as mm"
    ),
    InvalidExample(
        "missing_field", _with(bill_depth_mm=_DROP), "bill_depth_mm", "a required feature absent"
    ),
    InvalidExample("extra_field", _with(wingspan_cm=80.0), "wingspan_cm", "not in the contract"),
    InvalidExample("null_feature", _with(body_mass_g=None), "body_mass_g", "a required value null"),
    InvalidExample("unknown_sex", _with(sex="unknown"), "sex", "a category outside the contract"),
    InvalidExample("malformed_json", b'{"bill_length_mm": 39.1,', "body", "not JSON at all"),
    InvalidExample("not_an_object", b"[39.1, 18.7, 181, 3750]", "body", "a list, not an object"),
    InvalidExample(
        "huge_body",
        b'{"island": "' + b"x" * HUGE_BODY_BYTES + b'"}',
        "body",
        "a body far beyond one penguin",
    ),
)

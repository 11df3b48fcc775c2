"""A batch simulator: new penguins drawn from distributions fitted to the real rows.

Per species it fits a multivariate normal over the four measurements (so the correlations
between bill, flipper and mass survive), the island mix, the sex ratio and the share of
missing sex. New batches of any size come from those, deterministic for a seed, with knobs for
drift (shifted means, a new island or species mix) and corruption (nulls, out-of-range values,
wrong types, a renamed or missing column). Base draws and corruption use separate random
streams, so corrupting a batch changes only what the corruption names.
"""

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import pandas as pd

from shared.contract import CATEGORIES, CLASSES, NUMERIC_FEATURES, RANGES, TARGET
from shared.data import COLUMNS, load_penguins

# Recorded precision in the real data: bills to 0.1 mm, flippers to 1 mm, mass to 25 g steps
# in the field but stored as whole grams.
DECIMALS = {"bill_length_mm": 1, "bill_depth_mm": 1, "flipper_length_mm": 0, "body_mass_g": 0}
# What field sheets put where a number should be ("not determined"). Not one of the tokens
# pandas reads as missing, so it survives a CSV round trip as text.
WRONG_TYPE_TOKEN = "n.d."


@dataclass(frozen=True)
class Drift:
    """How the new world differs from the one the model was trained on."""

    mean_shift: dict[str, float] = field(default_factory=dict)  # feature -> added, in its unit
    island_mix: dict[str, float] | None = None  # island -> probability, for every species
    species_mix: dict[str, float] | None = None  # species -> probability


@dataclass(frozen=True)
class Corruption:
    """What a broken upstream export does to a batch. Rates are fractions of rows."""

    null_rate: dict[str, float] = field(default_factory=dict)
    out_of_range_rate: dict[str, float] = field(default_factory=dict)  # numeric features only
    wrong_type_rate: dict[str, float] = field(default_factory=dict)  # numeric features only
    rename: dict[str, str] = field(default_factory=dict)  # old column name -> new
    drop: tuple[str, ...] = ()


@dataclass(frozen=True)
class SpeciesModel:
    prior: float
    mean: np.ndarray
    cov: np.ndarray
    island_p: np.ndarray  # over CATEGORIES["island"]
    male_p: float
    sex_missing_p: float


@lru_cache(maxsize=1)
def fitted_models() -> dict[str, SpeciesModel]:
    """Per-species distributions fitted to the real 344 rows (computed once per process)."""
    frame = load_penguins()
    models = {}
    for species in CLASSES:
        rows = frame[frame[TARGET] == species]
        numeric = rows[list(NUMERIC_FEATURES)].dropna()
        islands = rows["island"].value_counts(normalize=True)
        sex = rows["sex"]
        models[species] = SpeciesModel(
            prior=len(rows) / len(frame),
            mean=numeric.mean().to_numpy(),
            cov=numeric.cov().to_numpy(),
            island_p=np.array([islands.get(i, 0.0) for i in CATEGORIES["island"]]),
            male_p=float((sex.dropna() == "male").mean()),
            sex_missing_p=float(sex.isna().mean()),
        )
    return models


def _probabilities(mix: dict[str, float], names: tuple[str, ...], what: str) -> np.ndarray:
    unknown = set(mix) - set(names)
    if unknown:
        raise ValueError(f"{what} mix names {sorted(unknown)}; allowed: {list(names)}")
    p = np.array([mix.get(n, 0.0) for n in names], dtype=float)
    if (p < 0).any() or p.sum() <= 0:
        raise ValueError(f"{what} mix must be non-negative with a positive total, got {mix}")
    return p / p.sum()


def _check_numeric(mapping: dict[str, float], what: str) -> None:
    unknown = set(mapping) - set(NUMERIC_FEATURES)
    if unknown:
        raise ValueError(f"{what} names {sorted(unknown)}; numeric features: {NUMERIC_FEATURES}")


def simulate_batch(
    n: int,
    seed: int = 0,
    *,
    drift: Drift | None = None,
    corruption: Corruption | None = None,
    year: int = 2010,
) -> pd.DataFrame:
    """`n` new penguins with the real data's columns and dtypes (plus drift and corruption)."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    drift = drift or Drift()
    _check_numeric(drift.mean_shift, "mean_shift")
    models = fitted_models()
    streams = np.random.SeedSequence(seed).spawn(2)
    base_rng, corrupt_rng = np.random.default_rng(streams[0]), np.random.default_rng(streams[1])

    species_p = (
        _probabilities(drift.species_mix, CLASSES, "species")
        if drift.species_mix is not None
        else np.array([models[s].prior for s in CLASSES])
    )
    species_code = base_rng.choice(len(CLASSES), size=n, p=species_p)
    numeric = np.empty((n, len(NUMERIC_FEATURES)))
    island_code = np.empty(n, dtype=np.int8)
    sex_code = np.empty(n, dtype=np.int8)  # 0 female, 1 male, -1 missing
    island_override = (
        _probabilities(drift.island_mix, CATEGORIES["island"], "island")
        if drift.island_mix is not None
        else None
    )
    for code, species in enumerate(CLASSES):
        idx = np.flatnonzero(species_code == code)
        m = models[species]
        numeric[idx] = base_rng.multivariate_normal(m.mean, m.cov, size=idx.size)
        island_p = m.island_p if island_override is None else island_override
        island_code[idx] = base_rng.choice(len(island_p), size=idx.size, p=island_p)
        missing = base_rng.random(idx.size) < m.sex_missing_p
        male = base_rng.random(idx.size) < m.male_p
        sex_code[idx] = np.where(missing, -1, male)

    frame = pd.DataFrame(
        {
            TARGET: pd.Categorical.from_codes(species_code, CLASSES).astype("str"),
            "island": pd.Categorical.from_codes(island_code, CATEGORIES["island"]).astype("str"),
            **{
                name: np.round(numeric[:, j] + drift.mean_shift.get(name, 0.0), DECIMALS[name])
                for j, name in enumerate(NUMERIC_FEATURES)
            },
            "sex": pd.Categorical.from_codes(sex_code, CATEGORIES["sex"]).astype("str"),
            "year": np.full(n, year, dtype=np.int64),
        },
        columns=COLUMNS,
    )
    if corruption is not None:
        frame = corrupt(frame, corruption, corrupt_rng)
    return frame


def corrupt(frame: pd.DataFrame, corruption: Corruption, rng: np.random.Generator) -> pd.DataFrame:
    """Apply each corruption to its own randomly chosen rows; renames and drops last."""
    frame = frame.copy()
    n = len(frame)

    def pick(rate: float, what: str) -> np.ndarray:
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"{what} rate must be within [0, 1], got {rate}")
        return rng.random(n) < rate

    _check_numeric(corruption.out_of_range_rate, "out_of_range_rate")
    _check_numeric(corruption.wrong_type_rate, "wrong_type_rate")
    for column, rate in corruption.null_rate.items():
        if column not in frame.columns:
            raise ValueError(f"null_rate names {column!r}; columns: {list(frame.columns)}")
        frame.loc[pick(rate, f"null_rate[{column}]"), column] = np.nan
    for column, rate in corruption.out_of_range_rate.items():
        high = RANGES[column][1]
        rows = pick(rate, f"out_of_range_rate[{column}]")
        # Half the bad rows are negative, half ten times the plausible maximum.
        bad = np.where(rng.random(n) < 0.5, -frame[column].abs(), high * 10)
        frame[column] = frame[column].where(~rows, bad)
    for column, rate in corruption.wrong_type_rate.items():
        rows = pick(rate, f"wrong_type_rate[{column}]")
        as_text = frame[column].astype("str")
        frame[column] = as_text.where(~rows, WRONG_TYPE_TOKEN) if rows.any() else frame[column]
    unknown = (set(corruption.rename) | set(corruption.drop)) - set(frame.columns)
    if unknown:
        raise ValueError(f"rename/drop names {sorted(unknown)}; columns: {list(frame.columns)}")
    return frame.drop(columns=list(corruption.drop)).rename(columns=corruption.rename)

"""One decision at a time in the registry: promotion is a compare-and-set on the champion the
candidate was judged against, approval refuses a stale challenger, an automatic promotion
clears the challenger, rollbacks walk the real history, and a broken store is never read as
"no champion"."""

import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from level2_pipelines import registry
from level2_pipelines.registry import CHALLENGER, CHAMPION
from level2_pipelines.tests.helpers import add_version, champion


def promoted(settings, candidate, alias=CHAMPION):
    """A new version, judged against today's champion and promoted to `alias`."""
    version = add_version(settings, candidate)
    registry.promote(MlflowClient(), settings.model_name, version, alias, champion(settings))
    return version


def test_promote_refuses_a_candidate_judged_against_an_older_champion(settings, candidate):
    """Two candidates judged against v1: the second to promote is refused, the first stays."""
    first = promoted(settings, candidate)
    a, b = add_version(settings, candidate), add_version(settings, candidate)
    registry.promote(MlflowClient(), settings.model_name, a, CHAMPION, first)

    with pytest.raises(registry.StaleChampion, match=f"moved from v{first} to v{a}"):
        registry.promote(MlflowClient(), settings.model_name, b, CHAMPION, first)

    assert champion(settings) == a


def test_approve_refuses_a_challenger_judged_against_another_champion(settings, candidate):
    """A challenger judged against v2 is not approved after a rollback made v1 champion."""
    first = promoted(settings, candidate)
    second = promoted(settings, candidate)
    waiting = promoted(settings, candidate, alias=CHALLENGER)
    MlflowClient().set_model_version_tag(settings.model_name, waiting, "judged_against", second)
    registry.rollback(MlflowClient(), settings.model_name)

    with pytest.raises(registry.RegistryError, match=f"challenger v{waiting}: the champion moved"):
        registry.approve(MlflowClient(), settings.model_name)

    assert champion(settings) == first


def test_approve_promotes_a_challenger_judged_against_today_s_champion(settings, candidate):
    """A challenger judged against the current champion becomes champion and stops waiting."""
    first = promoted(settings, candidate)
    waiting = add_version(settings, candidate, judged_against=first)
    registry.promote(MlflowClient(), settings.model_name, waiting, CHALLENGER, first)

    assert registry.approve(MlflowClient(), settings.model_name) == waiting
    assert champion(settings) == waiting
    assert registry.version_by_alias(MlflowClient(), settings.model_name, CHALLENGER) is None


def test_automatic_promotion_clears_the_waiting_challenger(settings, candidate):
    """A new champion leaves no challenger behind: it was judged against the old champion."""
    promoted(settings, candidate)
    promoted(settings, candidate, alias=CHALLENGER)

    promoted(settings, candidate)

    assert registry.version_by_alias(MlflowClient(), settings.model_name, CHALLENGER) is None


def test_repeated_rollbacks_walk_the_real_history(settings, candidate):
    """v1 -> v2 -> v3 promoted: rollbacks go to v2, then v1, then say there is nothing earlier."""
    v1, v2, v3 = (promoted(settings, candidate) for _ in range(3))
    client = MlflowClient()

    assert registry.rollback(client, settings.model_name) == (v3, v2)
    assert registry.rollback(client, settings.model_name) == (v2, v1)
    with pytest.raises(registry.RegistryError, match=f"v{v1} replaced no earlier champion"):
        registry.rollback(client, settings.model_name)


def test_rollback_refuses_a_version_that_cannot_be_served(settings, candidate):
    """Rolling back onto a version whose file no longer matches is refused; champion stays."""
    client = MlflowClient()
    first, second = promoted(settings, candidate), promoted(settings, candidate)
    client.set_model_version_tag(settings.model_name, first, "artifact_sha256", "0" * 64)

    with pytest.raises(registry.RegistryError, match=f"cannot roll back to v{first}: .*SHA-256"):
        registry.rollback(client, settings.model_name)

    assert champion(settings) == second


def test_version_by_alias_is_none_only_when_there_is_none(settings, candidate):
    """No model, or a model without the alias: None (not an error)."""
    client = MlflowClient()

    assert registry.version_by_alias(client, "no-such-model", CHAMPION) is None
    add_version(settings, candidate)
    assert registry.version_by_alias(client, settings.model_name, CHAMPION) is None


def test_version_by_alias_reports_a_store_that_cannot_be_read(settings, monkeypatch):
    """A store error is RegistryUnavailable naming it, never "no champion"."""

    def locked(*args, **kwargs):
        raise MlflowException("(sqlite3.OperationalError) database is locked", "INTERNAL_ERROR")

    monkeypatch.setattr(MlflowClient, "get_model_version_by_alias", locked)

    with pytest.raises(registry.RegistryUnavailable, match="database is locked"):
        registry.version_by_alias(MlflowClient(), settings.model_name, CHAMPION)


def test_trained_on_finds_the_version_trained_on_a_batch(settings, candidate):
    """The duplicate check finds the earliest version tagged with the batch's checksum."""
    first = add_version(settings, candidate, batch_checksum="c" * 64)
    add_version(settings, candidate, batch_checksum="c" * 64)

    found = registry.trained_on(MlflowClient(), settings.model_name, "c" * 64)

    assert str(found.version) == first
    assert registry.trained_on(MlflowClient(), settings.model_name, "d" * 64) is None

"""The settings helpers: a bad value stops start-up with the variable's name in the message."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from tracerail.settings import envbool, envfloat, envint, envints


@pytest.mark.parametrize(("value", "expected"), [
    ("true", True), ("TRUE", True), ("1", True), ("yes", True), ("on", True), (" On ", True),
    ("false", False), ("0", False), ("no", False), ("off", False), ("False", False),
])
def test_envbool_spellings(monkeypatch, value, expected):
    monkeypatch.setenv("X", value)
    assert envbool("X", not expected) is expected


@pytest.mark.parametrize("value", ["ture", "y", "2", "enabled", "nope"])
def test_envbool_refuses_anything_else(monkeypatch, value):
    monkeypatch.setenv("X", value)
    with pytest.raises(ImproperlyConfigured, match=rf"^X must be one of .* got '{value}'$"):
        envbool("X", False)


def test_unset_or_empty_means_the_default(monkeypatch):
    monkeypatch.delenv("X", raising=False)
    assert envbool("X", True) is True and envint("X", 7) == 7 and envfloat("X", 1.5) == 1.5
    monkeypatch.setenv("X", "  ")
    assert envbool("X", "true") is True and envint("X", 7) == 7
    assert envints("X", "1,3,7") == [1, 3, 7]


def test_a_string_default_follows_the_same_rules(monkeypatch):
    monkeypatch.delenv("X", raising=False)
    with pytest.raises(ImproperlyConfigured, match="X must be one of"):
        envbool("X", "maybe")


def test_envint(monkeypatch):
    monkeypatch.setenv("X", "42")
    assert envint("X", 1) == 42
    monkeypatch.setenv("X", "abc")
    with pytest.raises(ImproperlyConfigured) as err:
        envint("X", 1)
    assert str(err.value) == "X must be a whole number, got 'abc'"
    monkeypatch.setenv("X", "1.5")
    with pytest.raises(ImproperlyConfigured, match=r"X must be a whole number, got '1\.5'"):
        envint("X", 1)


def test_envint_without_default_is_required(monkeypatch):
    monkeypatch.delenv("X", raising=False)
    with pytest.raises(ImproperlyConfigured, match="X must be set"):
        envint("X")


@pytest.mark.parametrize("value", ["abc", "1,5", "nan", "inf", "-inf"])
def test_envfloat_refuses_non_numbers(monkeypatch, value):
    monkeypatch.setenv("TEMPORAL_RPC_TIMEOUT", value)
    with pytest.raises(ImproperlyConfigured, match=r"^TEMPORAL_RPC_TIMEOUT must be a"):
        envfloat("TEMPORAL_RPC_TIMEOUT", 1.5)


def test_envfloat(monkeypatch):
    monkeypatch.setenv("X", "2.5")
    assert envfloat("X", 1.0) == 2.5
    monkeypatch.setenv("X", "3")
    assert envfloat("X", 1.0) == 3.0


def test_envints(monkeypatch):
    monkeypatch.setenv("CASE_SLA_SECONDS", "60, 120,,240")
    assert envints("CASE_SLA_SECONDS", "1") == [60, 120, 240]
    monkeypatch.setenv("CASE_SLA_SECONDS", "60,2h")
    with pytest.raises(ImproperlyConfigured) as err:
        envints("CASE_SLA_SECONDS", "1")
    assert str(err.value) == (
        "CASE_SLA_SECONDS must be whole numbers separated by commas, got '60,2h'")

from __future__ import annotations

import hashlib
import hmac

from vitalops.ingest.pseudonym import Pseudonymizer


def test_keys_are_standard_hmac_sha256() -> None:
    for key in (b"k" * 10, b"x" * 100):
        pseudonyms = Pseudonymizer(key)
        expected = hmac.new(key, b"Patient/123", hashlib.sha256).hexdigest()
        assert pseudonyms.patient_key("123") == expected
        assert pseudonyms.patient_key("123") == expected  # cached value is the same
        assert pseudonyms.resource_key("Encounter", "e1") == hmac.new(key, b"Encounter/e1", "sha256").hexdigest()


def test_different_installations_give_different_keys() -> None:
    assert Pseudonymizer(b"a").patient_key("1") != Pseudonymizer(b"b").patient_key("1")


def test_cached_resource_keys_stay_hmac_and_bounded(monkeypatch) -> None:
    from vitalops.ingest import pseudonym

    monkeypatch.setattr(pseudonym, "_RESOURCE_CACHE_LIMIT", 3)
    pseudonyms = Pseudonymizer(b"k")
    for round_ in range(2):
        for number in range(5):
            expected = hmac.new(b"k", f"Observation/o{number}".encode(), "sha256").hexdigest()
            assert pseudonyms.resource_key("Observation", f"o{number}") == expected, round_
    assert len(pseudonyms._resources) <= 3

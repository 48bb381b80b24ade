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

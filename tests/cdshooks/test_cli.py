"""``vitalops ehr`` and ``vitalops review`` through the real entry point."""

from __future__ import annotations

import orjson

from tests.cdshooks.spec_client import EhrKeys


def test_ehr_add_list_revoke_and_review_list(cli, tmp_path) -> None:
    cli("init")
    assert cli("sites", "add", "north").exit_code == 0
    keys = EhrKeys()
    path = tmp_path / "jwks.json"
    path.write_bytes(orjson.dumps(keys.jwks))
    added = cli("ehr", "add", keys.issuer, "--site", "north", "--jwks", str(path), "--json").json()
    assert added["site"] == "north" and added["account"] == "ehr-north" and added["key_ids"] == [keys.kid]
    private = tmp_path / "private.json"
    private.write_bytes(orjson.dumps({"keys": [keys.jwks["keys"][0] | {"d": "secret"}]}))
    refused = cli("ehr", "add", "https://other.test/", "--site", "north", "--jwks", str(private), "--json")
    assert refused.exit_code == 2 and "private" in refused.json()["error"]["message"]
    assert cli("ehr", "add", keys.issuer, "--site", "north", "--jwks", str(path)).exit_code == 2  # trusted already
    assert [c["issuer"] for c in cli("ehr", "list", "--json").json()] == [keys.issuer]
    assert cli("ehr", "revoke", keys.issuer, "--reason", "key rotated", "--json").json()["revoked"] is True
    cli("users", "add", "casey", "--role", "clinician")
    assert cli("review", "list", "--json", user="casey").json() == []
    assert cli("review", "list").exit_code == 2  # the local owner is no clinician
    bad = cli("review", "decide", "1", "--reason", "x", user="casey")
    assert bad.exit_code == 2 and "exactly one" in bad.stderr

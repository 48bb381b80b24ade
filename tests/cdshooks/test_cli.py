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
    added = cli("ehr", "add", keys.issuer, "--site", "north", "--jwks", str(path), "--fhir-server",
                "https://fhir.north.test/r4/", "--fhir-server", "https://fhir2.north.test", "--json").json()
    assert added["site"] == "north" and added["account"] == "ehr-north" and added["key_ids"] == [keys.kid]
    assert added["fhir_servers"] == ["https://fhir.north.test/r4", "https://fhir2.north.test"]
    plain = cli("ehr", "add", "https://plain.test/", "--site", "north", "--jwks", str(path), "--fhir-server",
                "http://fhir.north.test/r4", "--json")
    assert plain.exit_code == 2 and plain.json()["error"]["details"]["field"] == "fhir_server"
    private = tmp_path / "private.json"
    private.write_bytes(orjson.dumps({"keys": [keys.jwks["keys"][0] | {"d": "secret"}]}))
    refused = cli("ehr", "add", "https://other.test/", "--site", "north", "--jwks", str(private), "--json")
    assert refused.exit_code == 2 and "private" in refused.json()["error"]["message"]
    assert cli("ehr", "add", keys.issuer, "--site", "north", "--jwks", str(path)).exit_code == 2  # trusted already
    listed = cli("ehr", "list", "--json").json()
    assert [c["issuer"] for c in listed] == [keys.issuer] and listed[0]["fhir_servers"] == added["fhir_servers"]
    assert cli("ehr", "revoke", keys.issuer, "--reason", "key rotated", "--json").json()["revoked"] is True
    cli("users", "add", "casey", "--role", "clinician")
    assert cli("review", "list", "--json", user="casey").json() == []
    assert cli("review", "list").exit_code == 2  # the local owner is no clinician
    bad = cli("review", "decide", "1", "--reason", "x", user="casey")
    assert bad.exit_code == 2 and "exactly one" in bad.stderr

#!/usr/bin/env sh
# Fetch the official HL7 FHIR R4 example resources (npm package hl7.fhir.r4.examples@4.0.1, CC0)
# into a cache folder that is not committed. Usage: scripts/fetch_fhir_examples.sh [DEST]
# DEST defaults to .cache/fhir-examples; the resources end up in DEST/package/*.json.
set -eu
DEST="${1:-.cache/fhir-examples}"
PACKAGE="hl7.fhir.r4.examples@4.0.1"
if [ -d "$DEST/package" ]; then
    echo "already present: $DEST/package"
    exit 0
fi
mkdir -p "$DEST"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
(cd "$WORK" && npm pack --silent "$PACKAGE" >/dev/null)
tar -xzf "$WORK"/hl7.fhir.r4.examples-4.0.1.tgz -C "$WORK"
mv "$WORK/package" "$DEST/package.partial"
mv "$DEST/package.partial" "$DEST/package"
echo "fetched $PACKAGE into $DEST/package"

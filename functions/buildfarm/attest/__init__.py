"""Attestations of a build: its CycloneDX SBOM (sbom, with the facts of bundled and linked),
its in-toto/SLSA provenance (provenance), detached ECDSA P-256 signatures that `openssl dgst
-sha256 -verify` checks (signing), and the check of a published build (verify_build)."""

"""Small ELF objects compiled with gcc for the package-dependency tests (the CPython packages'
and the runtimes'): what each links is known, so what dpkg-shlibdeps and rpm find can be."""

from __future__ import annotations

import subprocess
from pathlib import Path

# SSL_CTX_get_security_level and EVP_MD_fetch are in libssl/libcrypto's OPENSSL_3.0.0 version nodes.
SSL_C = """#include <openssl/ssl.h>
#include <openssl/evp.h>
int uses_openssl_3(void) { return SSL_CTX_get_security_level(0) + (EVP_MD_fetch(0, "SHA256", 0) != 0); }
"""


def gcc(tmp_path: Path, source: str, output: Path, *args: str) -> None:
    """Compile source (C text) to output with gcc -fPIC and args (-shared, -l..., -Wl,...)."""
    c_file = tmp_path / (output.name + ".c")
    c_file.write_text(source)
    output.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["gcc", "-fPIC", "-o", str(output), str(c_file), *args], check=True)

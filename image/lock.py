"""Write the sha256 of every file PyPI serves for each pin into an image requirements file.

    python image/lock.py image/migrator/requirements.txt [more files...]

Each file lists exact pins (`name==version`, extras allowed); comments and blank lines are kept, old hash
lines are dropped and written anew. All of a release's files are hashed (every wheel and the sdist), as
pip-compile does, so one file serves every Python version and architecture the Dockerfile may be built on,
and `pip install --require-hashes` refuses anything else. Only PyPI's simple index (PEP 691 JSON) is asked:
no package is downloaded or run. To bump a pin: edit its version, run this again, rebuild.
"""

from __future__ import annotations

import json
import re
import sys
import urllib.request
from pathlib import Path

INDEX = "https://pypi.org/simple"
PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(?P<extras>\[[^\]]*\])?==(?P<version>[^\s;\\]+)")


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def release_hashes(name: str, version: str) -> list[str]:
    """sha256 of each file of NAME==VERSION on PyPI, sorted; raises when the release has none."""
    url = f"{INDEX}/{normalize(name)}/"  # a fixed https URL: S310's file:// concern does not apply
    request = urllib.request.Request(url, headers={"Accept": "application/vnd.pypi.simple.v1+json"})  # noqa: S310
    with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
        files = json.load(response)["files"]
    wanted = f"{normalize(name).replace('-', '_')}-{version}"
    hashes = sorted({f["hashes"]["sha256"] for f in files
                     if _stem(f["filename"]) == wanted and not f.get("yanked")})
    if not hashes:
        raise SystemExit(f"lock.py: PyPI has no files for {name}=={version}")
    return hashes


def _stem(filename: str) -> str:
    """`name-version` of a wheel or sdist file name, with the name normalized the way wheels spell it."""
    base = filename.removesuffix(".tar.gz").removesuffix(".zip")
    if base.endswith(".whl"):
        base = "-".join(base.split("-")[:2])
    name, _, version = base.rpartition("-")
    return f"{normalize(name).replace('-', '_')}-{version}"


def lock(path: Path) -> None:
    out: list[str] = []
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("--hash="):
            continue
        match = PIN.match(stripped)
        if match is None:
            out.append(line)
            continue
        hashes = release_hashes(match["name"], match["version"])
        pin = stripped.rstrip("\\").rstrip()
        out.append(pin + " \\")
        last = len(hashes) - 1
        out += [f"    --hash=sha256:{h}" + (" \\" if i < last else "") for i, h in enumerate(hashes)]
    path.write_text("\n".join(out) + "\n")
    print(f"lock.py: {path}: {sum(1 for line in out if PIN.match(line))} pins hashed")


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    for name in argv:
        lock(Path(name))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

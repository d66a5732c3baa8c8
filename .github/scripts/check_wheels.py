"""Checks the user wheels in a directory (wheels.yml): a manylinux or macOS tag, the
extension, no test-only shader harness, no vendored libmlx, and on macOS the metallib.

    python .github/scripts/check_wheels.py wheelhouse
"""

import sys
import zipfile
from pathlib import Path


def problems(whl: Path) -> list:
    names = zipfile.ZipFile(whl).namelist()
    found = []
    if "manylinux" not in whl.name and "macosx" not in whl.name:
        found.append("not a manylinux/macOS tag")
    if not any(n.startswith("bitnet_ext/_ext.") for n in names):
        found.append("no extension module")
    if any("_metal_harness" in n for n in names):
        found.append("ships the test-only shader harness")
    if any("libmlx" in n for n in names):
        found.append("vendors libmlx")
    if "macosx" in whl.name and "bitnet_ext/bitnet_ext.metallib" not in names:
        found.append("no metallib")
    return found


def main(directory: str) -> int:
    wheels = sorted(Path(directory).glob("bitnet_ext-*.whl"))
    if not wheels:
        print(f"no bitnet_ext wheels in {directory}")
        return 1
    failed = False
    for whl in wheels:
        found = problems(whl)
        failed |= bool(found)
        print(f"{whl.name}: {'; '.join(found) if found else 'ok'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))

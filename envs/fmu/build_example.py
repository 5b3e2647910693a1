"""Build the example heated-tank FMU (FMI 2.0 co-simulation) from its C source.

    python -m envs.fmu.build_example plant.fmu

compiles ``heated_tank/heated_tank.c`` with the system C compiler (``$CC``, else ``cc``)
against the FMI 2.0 headers that ship with fmpy and zips the shared library with
``heated_tank/modelDescription.xml`` into an FMU. The tests build their C FMU this way, and
``scenarios/fmu_heated_tank.toml`` runs on the result.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from safe_trpo.errors import UserError

SOURCE_DIR = Path(__file__).parent / "heated_tank"
MODEL_IDENTIFIER = "heated_tank"


def fmi_headers() -> Path:
    """The folder holding fmi2Functions.h (fmpy's copy of the standard FMI headers)."""
    import fmpy

    folder = Path(fmpy.__file__).parent / "c-code"
    if not (folder / "fmi2Functions.h").is_file():
        raise UserError(f"{folder}: the FMI 2.0 headers of fmpy are missing")
    return folder


def platform_folder() -> tuple[str, str]:
    """(FMI 2.0 binaries folder, shared-library suffix) of this machine."""
    system = platform.system()
    bits = "64" if sys.maxsize > 2**32 else "32"
    if system == "Linux":
        return f"linux{bits}", ".so"
    if system == "Darwin":
        return f"darwin{bits}", ".dylib"
    if system == "Windows":
        return f"win{bits}", ".dll"
    raise UserError(f"build_example: no FMI 2.0 platform folder for {system}")


def build_fmu(out: str | Path, compiler: str | None = None) -> Path:
    """Compile the heated tank and write the FMU to ``out``; returns its path.

    compiler: C compiler command; default ``$CC`` or ``cc``.
    """
    out = Path(out)
    cc = compiler or os.environ.get("CC") or "cc"
    if shutil.which(cc) is None:
        raise UserError(f"build_example: C compiler {cc!r} not found (set $CC)")
    folder, suffix = platform_folder()
    with tempfile.TemporaryDirectory() as tmp:
        lib = Path(tmp) / f"{MODEL_IDENTIFIER}{suffix}"
        cmd = [cc, "-shared", "-fPIC", "-O2", "-I", str(fmi_headers()),
               str(SOURCE_DIR / "heated_tank.c"), "-o", str(lib), "-lm"]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise UserError(f"build_example: {' '.join(cmd)} failed: "
                            f"{done.stderr.strip().splitlines()[-1:]}")
        out.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as fmu:
            fmu.write(SOURCE_DIR / "modelDescription.xml", "modelDescription.xml")
            fmu.write(lib, f"binaries/{folder}/{lib.name}")
            fmu.write(SOURCE_DIR / "heated_tank.c", "sources/heated_tank.c")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="path of the FMU to write, e.g. scenarios/heated_tank.fmu")
    args = parser.parse_args(argv)
    try:
        print(build_fmu(args.out))
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Build the example heated-tank FMU (co-simulation, FMI 2.0 or 3.0) from its C source.

    python -m envs.fmu.build_example plant.fmu              # FMI 2.0
    python -m envs.fmu.build_example plant3.fmu --fmi 3.0   # FMI 3.0

compiles ``heated_tank/heated_tank.c`` (or ``heated_tank3.c``; the physics is in
``tank_core.h``) with the system C compiler (``$CC``, else ``cc``) against the FMI headers that
ship with fmpy and zips the shared library with its model description into an FMU. The tests
build their C FMUs this way, and ``examples/fmu/heated_tank.toml`` runs on the result.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from safe_trpo.errors import UserError

SOURCE_DIR = Path(__file__).parent / "heated_tank"
# FMI version -> (model identifier, C source, model description)
MODELS = {"2.0": ("heated_tank", "heated_tank.c", "modelDescription.xml"),
          "3.0": ("heated_tank3", "heated_tank3.c", "modelDescription3.xml")}


def fmi_headers() -> Path:
    """The folder holding fmi2Functions.h and fmi3Functions.h (fmpy's copy of the standard
    FMI headers)."""
    import fmpy

    folder = Path(fmpy.__file__).parent / "c-code"
    if not (folder / "fmi2Functions.h").is_file():
        raise UserError(f"{folder}: the FMI headers of fmpy are missing")
    return folder


def platform_folder(fmi_version: str) -> tuple[str, str]:
    """(binaries folder of this machine under the given FMI version, library suffix)."""
    system = platform.system()
    bits = "64" if sys.maxsize > 2**32 else "32"
    machine = platform.machine().lower()
    arch = {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)
    names = {"Linux": ("linux", "linux", ".so"), "Darwin": ("darwin", "darwin", ".dylib"),
             "Windows": ("win", "windows", ".dll")}
    if system not in names:
        raise UserError(f"build_example: no FMI platform folder for {system}")
    fmi2_name, fmi3_name, suffix = names[system]
    if fmi_version == "3.0":
        return f"{arch}-{fmi3_name}", suffix
    return f"{fmi2_name}{bits}", suffix


def fmi3_stubs(implemented: str) -> str:
    """C definitions, returning fmi3Error (or NULL), of every FMI 3.0 function that the source
    ``implemented`` does not define, generated from fmpy's fmi3FunctionTypes.h: fmpy binds
    every fmi3* symbol, and a co-simulation model needs only a few of them."""
    header = (fmi_headers() / "fmi3FunctionTypes.h").read_text()
    out = ['#include "fmi3Functions.h"']
    for ret, name, args in re.findall(r"typedef\s+(\w+)\s+(fmi3\w+)TYPE\s*\(([^;]*?)\);",
                                      header, flags=re.S):
        if re.search(rf"\b{name}\s*\(", implemented):
            continue
        body = {"fmi3Status": "return fmi3Error;", "fmi3Instance": "return NULL;",
                "void": ""}.get(ret)
        if body is None:
            raise UserError(f"build_example: no stub rule for {ret} {name}()")
        out.append(f"{ret} {name}({args}) {{ {body} }}")
    return "\n".join(out) + "\n"


def build_fmu(out: str | Path, compiler: str | None = None, fmi_version: str = "2.0") -> Path:
    """Compile the heated tank and write the FMU to ``out``; returns its path.

    compiler: C compiler command; default ``$CC`` or ``cc``.
    fmi_version: "2.0" or "3.0", the standard the FMU implements.
    """
    if fmi_version not in MODELS:
        raise UserError(f"build_example: FMI version {fmi_version!r}; expected 2.0 or 3.0")
    identifier, source, description = MODELS[fmi_version]
    out = Path(out)
    cc = compiler or os.environ.get("CC") or "cc"
    if shutil.which(cc) is None:
        raise UserError(f"build_example: C compiler {cc!r} not found (set $CC)")
    folder, suffix = platform_folder(fmi_version)
    with tempfile.TemporaryDirectory() as tmp:
        lib = Path(tmp) / f"{identifier}{suffix}"
        sources = [str(SOURCE_DIR / source)]
        if fmi_version == "3.0":
            stubs = Path(tmp) / "fmi3_stubs.c"
            stubs.write_text(fmi3_stubs((SOURCE_DIR / source).read_text()))
            sources.append(str(stubs))
        cmd = [cc, "-shared", "-fPIC", "-O2", "-I", str(fmi_headers()), *sources, "-o",
               str(lib), "-lm"]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise UserError(f"build_example: {' '.join(cmd)} failed: "
                            f"{done.stderr.strip().splitlines()[-1:]}")
        out.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as fmu:
            fmu.write(SOURCE_DIR / description, "modelDescription.xml")
            fmu.write(lib, f"binaries/{folder}/{lib.name}")
            if fmi_version == "2.0":  # FMI 3.0 would want a buildDescription.xml with them
                for name in (source, "tank_core.h"):
                    fmu.write(SOURCE_DIR / name, f"sources/{name}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="path of the FMU to write, e.g. examples/fmu/heated_tank.fmu")
    parser.add_argument("--fmi", default="2.0", choices=sorted(MODELS),
                        help="FMI version of the FMU (default 2.0)")
    args = parser.parse_args(argv)
    try:
        print(build_fmu(args.out, fmi_version=args.fmi))
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""ppmpi's PEP 517 build backend: ``pip install .`` and ``pip wheel .`` run the project's own
CMake build and pack what ``cmake --install`` puts in the package into a wheel.

Why a backend of our own: the package is a CMake project (the C++ layers, ``_core``, the
``ppmpi-worker`` executable), and a cluster's Python user builds it offline against the
system's MPI, with nothing but Debian's python3, setuptools and pip present (no scikit-build,
nothing fetched). Only the standard library is used here.

Settings (environment variables, as mpi4py's ``MPICC``):
  CMAKE_ARGS                   extra ``cmake`` configure arguments, split like a shell line
                               (e.g. ``-DMPI_CXX_COMPILER=/opt/openmpi/bin/mpicxx``); given
                               last, so they override this backend's own ``-D`` settings
  MPICC, MPICXX                the MPI compiler wrappers (``-DMPI_C_COMPILER``,
                               ``-DMPI_CXX_COMPILER``)
  CMAKE_BUILD_PARALLEL_LEVEL   compile jobs (default: the CPUs online)
  PPMPI_WHEEL_BUILD_DIR        keep the CMake build here (reused by the next build) instead of
                               a temporary directory
  CMAKE                        the cmake to run (default: cmake on PATH)
The package is built for the Python running the build (pip's), whose tag the wheel carries:
another Python builds with its own ``-m pip``, not with ``-DPython3_EXECUTABLE``.
"""
import base64
import hashlib
import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import zipfile

try:
    import tomllib
except ImportError:  # Python < 3.11
    import tomli as tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = "ppmpi"
# What the wheel needs; the benchmarks and test suites are not built.
TARGETS = ("_core", "ppmpi-worker")
# Kept out of an sdist: build trees and what tools leave behind.
SDIST_SKIP = re.compile(r"(^|/)(\.git|build|build-[^/]*|__pycache__|\.pytest_cache)(/|$)|\.pyc$")


def _project():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)["project"]


def _version():
    """The one version of the project: CMakeLists.txt's ``project(ppmpi VERSION x.y.z)``."""
    with open(os.path.join(ROOT, "CMakeLists.txt")) as f:
        found = re.search(r"project\(\s*ppmpi\s+VERSION\s+([0-9][0-9A-Za-z.]*)", f.read())
    if not found:
        raise RuntimeError("ppmpi_build: no `project(ppmpi VERSION ...)` in CMakeLists.txt")
    return found.group(1)


def _dist_name():
    return f"{PACKAGE}-{_version()}"


def _requirement(requirement, extra):
    if ";" not in requirement:
        return f'{requirement}; extra == "{extra}"'
    name, marker = requirement.split(";", 1)
    return f'{name.strip()}; ({marker.strip()}) and extra == "{extra}"'


def _metadata():
    """Core metadata 2.1 (METADATA / PKG-INFO) from pyproject.toml's [project]."""
    project = _project()
    lines = ["Metadata-Version: 2.1", f"Name: {project['name']}", f"Version: {_version()}"]
    if "description" in project:
        lines.append(f"Summary: {project['description']}")
    license_ = project.get("license", {})
    if "text" in license_:
        lines.append(f"License: {license_['text']}")
    for label, url in project.get("urls", {}).items():
        lines.append(f"Project-URL: {label}, {url}")
    lines += [f"Classifier: {c}" for c in project.get("classifiers", [])]
    if "requires-python" in project:
        lines.append(f"Requires-Python: {project['requires-python']}")
    lines += [f"Requires-Dist: {r}" for r in project.get("dependencies", [])]
    for extra, requirements in project.get("optional-dependencies", {}).items():
        lines.append(f"Provides-Extra: {extra}")
        lines += [f"Requires-Dist: {_requirement(r, extra)}" for r in requirements]
    readme = project.get("readme")
    if not isinstance(readme, str):
        return "\n".join(lines) + "\n"
    lines.append("Description-Content-Type: text/markdown")
    with open(os.path.join(ROOT, readme), encoding="utf-8") as f:
        return "\n".join(lines) + "\n\n" + f.read()


def _entry_points():
    scripts = _project().get("scripts", {})
    return "[console_scripts]\n" + "".join(f"{name} = {target}\n"
                                           for name, target in scripts.items())


def _wheel_tag():
    """The interpreter building it, and this platform: the wheel holds an extension module
    and an executable linked against this Python and this MPI."""
    py = f"cp{sys.version_info.major}{sys.version_info.minor}"
    platform = re.sub(r"[-.]", "_", sysconfig.get_platform())
    return f"{py}-{py}{sys.abiflags}-{platform}"


def _cmake_configure_args(build_dir):
    args = ["-S", ROOT, "-B", build_dir,
            f"-DPython3_EXECUTABLE={sys.executable}",
            "-DPPMPI_BUILD_TESTS=OFF",
            # The package's files land in <prefix>/ppmpi, which becomes the wheel's ppmpi/.
            f"-DPPMPI_PY_INSTALL_DIR={PACKAGE}",
            # The project's optimisation (RelWithDebInfo's -O2) without the debug information,
            # which the stripped install drops anyway and which costs ~30 % of the compile time.
            "-DCMAKE_BUILD_TYPE=RelWithDebInfo", "-DCMAKE_C_FLAGS_RELWITHDEBINFO=-O2 -DNDEBUG",
            "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O2 -DNDEBUG",
            # An MPI (or Boost) outside the system's library paths is still found at run time.
            "-DCMAKE_INSTALL_RPATH_USE_LINK_PATH=ON"]
    for variable, cache in (("MPICC", "MPI_C_COMPILER"), ("MPICXX", "MPI_CXX_COMPILER")):
        if os.environ.get(variable):
            args.append(f"-D{cache}={os.environ[variable]}")
    return args + shlex.split(os.environ.get("CMAKE_ARGS", ""))


def _run(command):
    print("ppmpi_build: " + shlex.join(command), flush=True)
    subprocess.run(command, check=True)


def _cmake_install(stage):
    """Configures, builds the package's targets and installs them into `stage`; returns the
    directory of the package in it."""
    cmake = shutil.which(os.environ.get("CMAKE", "cmake"))
    if cmake is None:
        raise RuntimeError("ppmpi_build: cmake not found (Debian: apt-get install cmake)")
    kept = os.environ.get("PPMPI_WHEEL_BUILD_DIR")
    build_dir = kept or tempfile.mkdtemp(prefix="ppmpi-wheel-build-")
    try:
        _run([cmake] + _cmake_configure_args(build_dir))
        jobs = os.environ.get("CMAKE_BUILD_PARALLEL_LEVEL") or str(os.cpu_count() or 1)
        _run([cmake, "--build", build_dir, "--parallel", jobs, "--target", *TARGETS])
        # Stripped of symbol tables; ppmpi-worker keeps the dynamic symbols that extension
        # modules such as numpy's link against.
        _run([cmake, "--install", build_dir, "--prefix", stage, "--strip"])
    finally:
        if not kept:
            shutil.rmtree(build_dir, ignore_errors=True)
    package = os.path.join(stage, PACKAGE)
    worker = os.path.join(package, "ppmpi-worker")
    if not os.access(worker, os.X_OK):
        raise RuntimeError(f"ppmpi_build: {worker} was not installed as an executable")
    return package


def _record_line(arcname, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{arcname},sha256={digest},{len(data)}\n"


def _write_dist_info(directory):
    """The .dist-info of the wheel (without WHEEL and RECORD) as files in `directory`;
    returns its name."""
    name = f"{_dist_name()}.dist-info"
    os.makedirs(os.path.join(directory, name), exist_ok=True)
    for file, text in (("METADATA", _metadata()), ("entry_points.txt", _entry_points())):
        with open(os.path.join(directory, name, file), "w", encoding="utf-8") as f:
            f.write(text)
    return name


def _zip_tree(wheel, top, records):
    """Adds every file under `top` to the open wheel as top's relative path. Mode bits go
    with each file (ZipFile.write keeps them): pip restores the executable bit of
    ppmpi-worker from them."""
    for root, dirs, files in os.walk(top):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for file in sorted(files):
            if file.endswith(".pyc"):
                continue
            path = os.path.join(root, file)
            arcname = os.path.relpath(path, top).replace(os.sep, "/")
            wheel.write(path, arcname)
            with open(path, "rb") as f:
                records.append(_record_line(arcname, f.read()))


def _pack_wheel(path, stage, dist_info):
    records = []
    wheel_text = ("Wheel-Version: 1.0\nGenerator: ppmpi_build\nRoot-Is-Purelib: false\n"
                  f"Tag: {_wheel_tag()}\n")
    with open(os.path.join(stage, dist_info, "WHEEL"), "w") as f:
        f.write(wheel_text)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as wheel:
        _zip_tree(wheel, stage, records)
        record = f"{dist_info}/RECORD"
        info = zipfile.ZipInfo(record, date_time=(2020, 1, 1, 0, 0, 0))
        info.external_attr = 0o644 << 16
        wheel.writestr(info, "".join(records) + f"{record},,\n", zipfile.ZIP_DEFLATED)


# -- PEP 517 hooks -------------------------------------------------------------------------

def get_requires_for_build_wheel(config_settings=None):
    return []  # cmake, a compiler, MPI, Boost and pybind11 come from the system, not PyPI


def get_requires_for_build_sdist(config_settings=None):
    return []


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    return _write_dist_info(metadata_directory)


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    stage = tempfile.mkdtemp(prefix="ppmpi-wheel-stage-")
    try:
        _cmake_install(os.path.join(stage, "prefix"))
        # The wheel holds the package and its .dist-info only (not the prefix's bin/: the
        # scripts are console-script entry points there).
        tree = os.path.join(stage, "tree")
        shutil.copytree(os.path.join(stage, "prefix", PACKAGE), os.path.join(tree, PACKAGE))
        dist_info = _write_dist_info(tree)
        name = f"{_dist_name()}-{_wheel_tag()}.whl"
        os.makedirs(wheel_directory, exist_ok=True)
        _pack_wheel(os.path.join(wheel_directory, name), tree, dist_info)
        return name
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _sdist_files():
    """The project's files: git's list when this is a clone, else every file but build trees."""
    try:
        listed = subprocess.run(["git", "-C", ROOT, "ls-files", "-co", "--exclude-standard"],
                                check=True, capture_output=True, text=True).stdout.split("\n")
    except (OSError, subprocess.CalledProcessError):
        listed = [os.path.relpath(os.path.join(root, f), ROOT)
                  for root, _dirs, files in os.walk(ROOT) for f in files]
    return sorted(f for f in listed
                  if f and not SDIST_SKIP.search(f) and os.path.isfile(os.path.join(ROOT, f)))


def build_sdist(sdist_directory, config_settings=None):
    base = _dist_name()
    name = f"{base}.tar.gz"
    os.makedirs(sdist_directory, exist_ok=True)
    path = os.path.join(sdist_directory, name)
    with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT) as tar:
        for file in _sdist_files():
            tar.add(os.path.join(ROOT, file), f"{base}/{file}", recursive=False)
        with tempfile.NamedTemporaryFile("w", encoding="utf-8", delete=False) as info:
            info.write(_metadata())
        try:
            tar.add(info.name, f"{base}/PKG-INFO")
        finally:
            os.unlink(info.name)
    return name

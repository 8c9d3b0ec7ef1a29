import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # share tests/conftest's fixtures' paths
sys.path.insert(0, str(Path(__file__).resolve().parent))  # `import baseline_authors` from the benchmark modules

import platform  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
from importlib import metadata  # noqa: E402

import pytest  # noqa: E402

import time  # noqa: E402


def _cpu_busy_seconds() -> float | None:
    """Seconds of CPU time all processes of the machine have used since boot (/proc/stat), None off Linux."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        ticks = [int(v) for v in fields]
    except (OSError, ValueError, IndexError):
        return None
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _own_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


_LOAD_AT_START = os.getloadavg()[0]
_START = (time.monotonic(), _cpu_busy_seconds(), _own_cpu_seconds())
_LIBRARIES = ("tensorflow", "tensorflow-cpu", "keras", "jax", "jaxlib", "numpy", "scipy", "pandas", "pytest-benchmark")


# --------------------------------------------------------------------------------------------- quick selection
def pytest_addoption(parser):
    parser.addoption("--quick", action="store_true", default=False,
                     help="benchmarks: skip the cases marked slow (same as -m 'not slow')")


def pytest_collection_modifyitems(config, items):
    if not config.getoption("--quick", default=False):
        return
    skip = pytest.mark.skip(reason="--quick: slow benchmark case left out")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _record_load(request):
    """Every benchmark records the 1-minute load average when it starts (the machine may be shared)."""
    if "benchmark" in request.fixturenames:
        request.getfixturevalue("benchmark").extra_info.setdefault("load_1m", round(os.getloadavg()[0], 2))


# --------------------------------------------------------------------------------------------- machine description
def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_flags() -> list[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                return sorted(f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile") if f in flags)
    except OSError:
        pass
    return []


def _gpus() -> list[str]:
    """GPUs TensorFlow sees (when it was imported by the run), else nvidia-smi's list, else none."""
    if "tensorflow" in sys.modules:
        tf = sys.modules["tensorflow"]
        names = []
        for device in tf.config.list_physical_devices("GPU"):
            try:
                names.append(tf.config.experimental.get_device_details(device).get("device_name", device.name))
            except Exception:  # noqa: BLE001 - a description, never a failure
                names.append(device.name)
        return names
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20).stdout
            return [line.strip() for line in out.splitlines() if line.strip()]
        except (OSError, subprocess.SubprocessError):
            pass
    return []


def machine_description() -> dict:
    versions = {}
    for name in _LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    if "keras" in sys.modules:
        backend = sys.modules["keras"].backend.backend()
    else:
        backend = os.environ.get("KERAS_BACKEND", "tensorflow") + " (keras not imported by this run)"
    cores = os.cpu_count() or 1
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = cores
    load_end = os.getloadavg()[0]
    wall, busy = time.monotonic() - _START[0], _cpu_busy_seconds()
    others = None  # cores' worth of CPU used by other processes during the run, on average
    if busy is not None and _START[1] is not None and wall > 0:
        others = max(0.0, (busy - _START[1]) - (_own_cpu_seconds() - _START[2])) / wall
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") if hasattr(os, "sysconf") else None
    return {
        "cpu_model": _cpu_model(), "cpu_flags": _cpu_flags(), "cpu_cores": cores, "cpu_cores_usable": usable,
        "memory_gib": round(memory / 1024 ** 3, 1) if memory else None, "gpus": _gpus(),
        "libraries": versions, "keras_backend": backend, "python": platform.python_version(),
        "load_1m_at_start": round(_LOAD_AT_START, 2), "load_1m_at_end": round(load_end, 2),
        "other_processes_cores_avg": None if others is None else round(others, 2), "run_wall_s": round(wall, 1),
        "loaded": bool(_LOAD_AT_START > 0.5 * usable or (others is not None and others > 0.25 * usable)),
    }


def pytest_benchmark_update_machine_info(config, machine_info):
    machine_info["replication"] = machine_description()

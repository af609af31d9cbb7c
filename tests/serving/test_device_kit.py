"""bench/device/: the GPU run's packages travel to the device tool's machine in parts, one a call, and the call
that completes them installs the packages and runs bench/gpu.sh (here without a GPU: its CUDA tests skip and the
engine runs on the CPU, with a tiny model)."""
import base64
import hashlib
import os
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def build_wheel(folder: Path) -> Path:
    """A wheel of one module, `kit_probe`, standing in for the kit's downloads (the real ones come from PyPI)."""
    files = {
        "kit_probe/__init__.py": b"CARRIED = True\n",
        "kit_probe-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: kit-probe\nVersion: 1.0\n",
        "kit_probe-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = [f"{name},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},{len(data)}"
              for name, data in files.items()]
    files["kit_probe-1.0.dist-info/RECORD"] = "\n".join([*record, "kit_probe-1.0.dist-info/RECORD,,"]).encode()
    wheel = folder / "kit_probe-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return wheel


def copy_of_the_tree(target: Path) -> Path:
    """The working tree as the device tool sends it: tracked files and untracked ones git does not ignore."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            (target / name).write_bytes(source.read_bytes())
    return target


def test_the_kit_travels_in_parts_and_the_last_call_runs_the_gpu_checks(tiny_chat, tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    build_wheel(wheels)
    here = copy_of_the_tree(tmp_path / "here")  # a checkout: pack.sh sizes its parts by git's working tree
    subprocess.run(["git", "init", "--quiet"], cwd=here, check=True)
    subprocess.run(["git", "add", "--all"], cwd=here, check=True)
    (here / "bench/device/requirements.txt").write_text("kit-probe==1.0\n")
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    env = {**os.environ, "PYTHON": sys.executable, "DEVICE_PYTHON": python, "PART_BYTES": "4096",
           "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(wheels)}
    packed = subprocess.run(["bash", "bench/device/pack.sh"], cwd=here, env=env, capture_output=True, text=True,
                            timeout=120)
    assert packed.returncode == 0, packed.stderr[-2000:]
    parts = sorted((here / ".device").glob("part-*"))
    assert len(parts) > 1 and f"in {len(parts)} parts" in packed.stdout
    assert packed.stdout.count('run(command="bash bench/device/receive.sh"') == len(parts)

    there = copy_of_the_tree(tmp_path / "there")  # the device machine's copy; each call brings one part
    kit, out = tmp_path / "kit", tmp_path / "out"
    env = {**os.environ, "PYTHON": sys.executable, "KIT": str(kit), "OUT": str(out), "ROWS": "1",
           "GENERATOR_MODEL": str(tiny_chat), "GENERATOR_ADAPTER": "none", "VAR_DIR": str(tmp_path / "var")}
    for number, part in enumerate(parts, start=1):
        carried = there / ".device"
        if carried.exists():
            for old in carried.iterdir():
                old.unlink()
        carried.mkdir(exist_ok=True)
        for name in (part.name, "parts"):
            (carried / name).write_bytes((here / ".device" / name).read_bytes())
        call = subprocess.run(["bash", "bench/device/receive.sh"], cwd=there, env=env, capture_output=True,
                              text=True, timeout=600)
        if number < len(parts):
            assert call.returncode == 0, call.stderr[-2000:]
            assert f"Have {number} of {len(parts)} parts" in call.stdout
    # The last call: the carried package is installed, and bench/gpu.sh ran its steps (nvidia-smi is missing
    # here, so it ends with a failure after running them all).
    assert (kit / "site" / "kit_probe" / "__init__.py").is_file()
    assert "Figures in" in call.stdout, call.stderr[-2000:]
    (figures,) = out.iterdir()
    assert "skipped" in (figures / "cuda-test.txt").read_text()
    assert "| torch-float32 | 1 |" in (figures / "engine.txt").read_text()

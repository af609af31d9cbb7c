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


def pack(here: Path, wheels: Path, **settings: str) -> list[Path]:
    """bench/device/pack.sh in the checkout `here`, the wheels found in `wheels`; the parts it wrote."""
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    env = {**os.environ, "PYTHON": sys.executable, "DEVICE_PYTHON": python, "PIP_NO_INDEX": "1",
           "PIP_FIND_LINKS": str(wheels), **settings}
    packed = subprocess.run(["bash", "bench/device/pack.sh"], cwd=here, env=env, capture_output=True, text=True,
                            timeout=120)
    assert packed.returncode == 0, packed.stderr[-2000:]
    parts = sorted((here / ".device").glob("part-*"))
    assert f"in {len(parts)} parts" in packed.stdout
    assert packed.stdout.count('run(command="bash bench/device/receive.sh"') == len(parts)
    return parts


class DeviceMachine:
    """The device machine's copy of the tree; each call brings the files it carries into .device/, beside what
    earlier calls left there (the tool keeps ignored files between calls)."""

    def __init__(self, tmp_path: Path, tiny_chat: Path) -> None:
        self.tree = copy_of_the_tree(tmp_path / "there")
        self.kit, self.out = tmp_path / "kit", tmp_path / "out"
        self.env = {**os.environ, "PYTHON": sys.executable, "KIT": str(self.kit), "OUT": str(self.out), "ROWS": "1",
                    "GENERATOR_MODEL": str(tiny_chat), "GENERATOR_ADAPTER": "none", "VAR_DIR": str(tmp_path / "var")}

    def call(self, *carried: Path, corrupt: bool = False) -> subprocess.CompletedProcess:
        (self.tree / ".device").mkdir(exist_ok=True)
        for path in carried:
            data = path.read_bytes()
            (self.tree / ".device" / path.name).write_bytes(data[:-1] + b"?" if corrupt and path.name != "parts" else data)
        return subprocess.run(["bash", "bench/device/receive.sh"], cwd=self.tree, env=self.env, capture_output=True,
                              text=True, timeout=600)


def test_the_kit_travels_in_parts_and_the_last_call_runs_the_gpu_checks(tiny_chat, tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    build_wheel(wheels)
    here = copy_of_the_tree(tmp_path / "here")  # a checkout: pack.sh sizes its parts by git's working tree
    subprocess.run(["git", "init", "--quiet"], cwd=here, check=True)
    subprocess.run(["git", "add", "--all"], cwd=here, check=True)
    (here / "bench/device/requirements.txt").write_text("kit-probe==1.0\n")
    assert len(pack(here, wheels)) == 1  # parts as large as fit beside the tree: this small kit needs one
    parts = pack(here, wheels, PART_BYTES="4096")
    assert len(parts) > 2
    manifest = here / ".device" / "parts"
    device = DeviceMachine(tmp_path, tiny_chat)
    (device.tree / ".device").mkdir()
    (device.tree / ".device" / "part-99").write_bytes(b"left by an earlier packing")

    first = device.call(parts[0], manifest)
    assert first.returncode == 0 and f"Have 1 of {len(parts)} parts; carry part-02 next" in first.stdout
    broken = device.call(parts[1], manifest, corrupt=True)
    assert broken.returncode == 0 and f"Have 1 of {len(parts)} parts; carry part-02 next" in broken.stdout
    assert "checksums differ (broken in transfer, or from another packing): part-02." in broken.stdout
    for number, part in enumerate(parts[1:-1], start=2):  # part-02 carried again, whole
        call = device.call(part, manifest)
        assert call.returncode == 0 and f"Have {number} of {len(parts)} parts" in call.stdout, call.stderr
    last = device.call(parts[-1], manifest)
    # The carried package is installed and bench/gpu.sh ran every step; nvidia-smi is missing here, so it
    # ends with a failure after running them all.
    assert (device.kit / "site" / "kit_probe" / "__init__.py").is_file()
    assert last.returncode == 1 and "Figures in" in last.stdout, last.stderr[-2000:]
    (figures,) = device.out.iterdir()
    assert "skipped" in (figures / "cuda-test.txt").read_text()
    assert "| torch-float32 | 1 |" in (figures / "engine.txt").read_text()

    # A new packing starts over: nothing installed from the one before stays.
    repacked = pack(here, wheels, PART_BYTES="5000")
    again = device.call(repacked[0], manifest)
    assert again.stdout.startswith(f"Have 1 of {len(repacked)} parts")
    assert not (device.kit / "site").exists()

"""Build a local wheelhouse of tiny STAND-IN wheels for tests (no network, no setuptools).

Nothing here is the real PyTorch, kornia, numpy...: every wheel is a few lines of pure
Python named like the real distribution, at a chosen version, with the dependency edges
that matter to pip's resolver. Tests install from it with real pip in real venvs:

    pip install --no-index --find-links WHEELHOUSE -c constraints.txt -r requirements.txt

What the stand-ins reproduce:

- ``torch`` / ``torchvision`` / ``torchaudio`` at the pinned versions; torchvision and
  torchaudio declare ``Requires-Dist: torch==<that torch>`` as the real ones do, and fail
  at import (like the real compiled extensions) when a different torch is installed.
  The 2.3.1 set declares ``Requires-Python: >=3.8,<3.13`` (upstream ships no cp313 wheel).
- The torch-upgrade trap of ComfyUI v0.3.64 (FACTS.md): ``kornia`` 0.9.0 requires
  ``torch>=2.5.1`` and a torch 2.5.1 set (torchvision 0.20.1, torchaudio 2.5.1) is present,
  so ``pip install -r requirements.txt`` without a constraints file upgrades torch to
  2.5.1; with ``torch==2.3.1`` constraints pip falls back to kornia 0.8.1 (needs
  ``torch>=1.9.1``; 0.7.0 is there too).
- Every distribution named by the fake ComfyUI and fake ComfyUI-GGUF requirements.txt
  (tests/harness/fake_comfyui/), plus ``requests`` (ComfyUI imports it without listing it;
  the stand-in ``transformers`` pulls it in as the real one does).

The one REAL wheel: ``build_wheelhouse(dest, uv=True)`` adds the uv wheel for this machine
(``pip download uv==<pin> --no-deps``, the pin being the tool's ``UV_VERSION``), so nodes with
``installer: uv`` install the real uv offline, as a node would from its index. ``uv_wheel()``
downloads it once into a cache that outlives test sessions (``/tmp/provision-harness/cache/``
as root, ``$PROVISION_HARNESS_CACHE`` when set) and every wheelhouse hard-links it from there;
a file lock makes concurrent xdist workers download it once.

``isolated_pip_env()`` gives pip an environment without this machine's pip configuration
(``PIP_FIND_LINKS``, a global ``constraint`` file, extra index URLs), which would otherwise
leak into ``--no-index --find-links`` installs.

The fake ``torch`` emulates only what the tool and the fake ComfyUI look at:
``torch.__version__``, ``torch.version.__version__``, ``torch.device``,
``torch.cuda.is_available()`` (always False; ``torch.cuda.current_device()`` raises
``AssertionError: Torch not compiled with CUDA enabled`` like a CPU/macOS build),
``torch.backends.mps.is_available()`` and ``torch.library.custom_op`` (only from 2.4 on).

``torch.backends.mps.is_available()`` -- the "looks like a Mac" switch:
  ``FAKE_MACOS_MPS=1`` -> True, ``FAKE_MACOS_MPS=0`` -> False; unset -> True only when
  ``sys.platform == "darwin"`` or the first ``uname`` on PATH prints ``Darwin`` (so the
  fake_macos PATH shims count as a Mac).
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

__all__ = [
    "Dist",
    "TRAP_TORCH",
    "build_wheel",
    "build_wheelhouse",
    "constraints_text",
    "isolated_pip_env",
    "standard_dists",
    "uv_wheel",
    "wheel_filename",
]

# The versions the trap upgrades to (a real, matching torch/vision/audio set on PyPI).
TRAP_TORCH = "2.5.1"
TRAP_TORCHVISION = "0.20.1"
TRAP_TORCHAUDIO = "2.5.1"

_ZIP_DATE = (1980, 1, 1, 0, 0, 0)
_FORMAT = "1"  # bump when the generated content changes: invalidates cached wheelhouses


@dataclass(frozen=True)
class Dist:
    """One stand-in distribution: a name, a version, its Requires-Dist lines and files.

    ``files`` maps paths inside the wheel (``pkg/__init__.py``) to their text; when empty a
    single module named after the distribution is generated.
    """

    name: str
    version: str
    requires: tuple[str, ...] = ()
    requires_python: str | None = None
    files: Mapping[str, str] = field(default_factory=dict)
    summary: str = ""


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def wheel_filename(name: str, version: str) -> str:
    """Return the py3-none-any wheel file name for a distribution."""
    return f"{_normalize(name)}-{version}-py3-none-any.whl"


def _stand_in_module(dist_name: str, module: str, version: str, body: str = "") -> str:
    return (
        f'"""STAND-IN for the {dist_name} distribution, version {version}.\n\n'
        "Built by tests/harness/wheelhouse.py for tests; it contains no real code of\n"
        f'{dist_name}. Importing it only proves that pip installed it.\n"""\n\n'
        f"__version__ = {version!r}\n{body}"
    )


def _simple(name: str, version: str, requires: tuple[str, ...] = (), module: str | None = None,
            body: str = "") -> Dist:
    mod = module or _normalize(name)
    return Dist(
        name=name,
        version=version,
        requires=requires,
        files={f"{mod}/__init__.py": _stand_in_module(name, mod, version, body)},
        summary=f"Stand-in for {name} (tests only)",
    )


def _torch(version: str) -> Dist:
    major_minor = tuple(int(p) for p in version.split(".")[:2])
    py = ">=3.8,<3.13" if major_minor < (2, 5) else ">=3.9"
    library_body = (
        "\n\ndef custom_op(name, fn=None, /, *, mutates_args, device_types=None, schema=None):\n"
        '    """Stand-in of torch.library.custom_op (new in torch 2.4): returns the function."""\n'
        "    def wrap(f):\n"
        "        return f\n"
        "    return wrap(fn) if fn is not None else wrap\n"
        if major_minor >= (2, 4) else
        "\n# torch.library.custom_op does not exist before torch 2.4 (as upstream).\n"
    )
    init = _stand_in_module("torch", "torch", version, body=(
        "\nfrom torch import backends, cuda, library, version  # noqa: E402,F401\n\n\n"
        "class device:\n"
        '    """Stand-in of torch.device: ``device("mps")``, ``device("cuda", 0)``, ``device("cpu")``."""\n\n'
        "    def __init__(self, type, index=None):\n"
        "        if isinstance(type, int):\n"
        "            type, index = \"cuda\", type\n"
        "        elif \":\" in type:\n"
        "            type, _, idx = type.partition(\":\")\n"
        "            index = int(idx)\n"
        "        self.type = type\n"
        "        self.index = index\n\n"
        "    def __repr__(self):\n"
        "        return f\"device(type='{self.type}'\" + (f\", index={self.index})\" if self.index is not None else \")\")\n\n"
        "    def __str__(self):\n"
        "        return self.type if self.index is None else f\"{self.type}:{self.index}\"\n\n"
        "    def __eq__(self, other):\n"
        "        return isinstance(other, device) and (self.type, self.index) == (other.type, other.index)\n\n"
        "    def __hash__(self):\n"
        "        return hash((self.type, self.index))\n\n\n"
        "def manual_seed(seed):\n"
        '    """Accept a seed, as torch does; the stand-in has no RNG state."""\n'
        "    return None\n"
    ))
    version_py = (
        '"""STAND-IN of torch.version (tests only)."""\n\n'
        f"__version__ = {version!r}\n"
        "cuda = None\n"
        "hip = None\n"
        "debug = False\n"
        "git_version = '0000000000000000000000000000000000000000'\n"
    )
    cuda_py = (
        '"""STAND-IN of torch.cuda: a build without CUDA, like the macOS and CPU wheels."""\n\n\n'
        "def is_available():\n"
        "    return False\n\n\n"
        "def device_count():\n"
        "    return 0\n\n\n"
        "def current_device():\n"
        '    raise AssertionError("Torch not compiled with CUDA enabled")\n'
    )
    backends_init = (
        '"""STAND-IN of torch.backends (tests only)."""\n\n'
        "from torch.backends import mps  # noqa: F401\n"
    )
    mps_py = (
        '"""STAND-IN of torch.backends.mps.\n\n'
        "is_available() is the harness's 'looks like a Mac' switch: FAKE_MACOS_MPS=1 -> True,\n"
        "FAKE_MACOS_MPS=0 -> False; unset -> True only on darwin or when the first `uname` on\n"
        'PATH prints Darwin (the fake_macos shims)."""\n\n'
        "import os\n"
        "import shutil\n"
        "import subprocess\n"
        "import sys\n\n\n"
        "def _looks_like_mac():\n"
        '    flag = os.environ.get("FAKE_MACOS_MPS")\n'
        "    if flag is not None:\n"
        '        return flag.strip() == "1"\n'
        '    if sys.platform == "darwin":\n'
        "        return True\n"
        '    uname = shutil.which("uname")\n'
        "    if uname is None:\n"
        "        return False\n"
        "    try:\n"
        "        out = subprocess.run([uname, \"-s\"], capture_output=True, text=True, timeout=5).stdout\n"
        "    except (OSError, subprocess.SubprocessError):\n"
        "        return False\n"
        '    return out.strip() == "Darwin"\n\n\n'
        "def is_built():\n"
        "    return _looks_like_mac()\n\n\n"
        "def is_available():\n"
        "    return _looks_like_mac()\n"
    )
    library_py = '"""STAND-IN of torch.library (tests only)."""\n' + library_body
    return Dist(
        name="torch",
        version=version,
        requires=("filelock", "typing-extensions>=4.8.0"),
        requires_python=py,
        files={
            "torch/__init__.py": init,
            "torch/version.py": version_py,
            "torch/cuda.py": cuda_py,
            "torch/library.py": library_py,
            "torch/backends/__init__.py": backends_init,
            "torch/backends/mps.py": mps_py,
        },
        summary="Stand-in for PyTorch (tests only)",
    )


def _torch_companion(name: str, version: str, torch_version: str) -> Dist:
    """torchvision / torchaudio: require torch==X and refuse to import with another torch."""
    major_minor = tuple(int(p) for p in torch_version.split(".")[:2])
    py = ">=3.8,<3.13" if major_minor < (2, 5) else ">=3.9"
    body = (
        "\nimport torch as _torch  # noqa: E402\n\n"
        f"if _torch.__version__ != {torch_version!r}:\n"
        "    # The real compiled extension fails to load against another torch build.\n"
        "    raise RuntimeError(\n"
        f"        \"{name} {version} was built for torch {torch_version}, found torch \"\n"
        f"        + _torch.__version__ + \": operator {name}::nms does not exist\"\n"
        "    )\n"
    )
    return Dist(
        name=name,
        version=version,
        requires=(f"torch=={torch_version}",),
        requires_python=py,
        files={f"{name}/__init__.py": _stand_in_module(name, name, version, body)},
        summary=f"Stand-in for {name} (tests only)",
    )


def standard_dists(torch: str = "2.3.1", torchvision: str = "0.18.1",
                   torchaudio: str = "2.3.1") -> list[Dist]:
    """Return every stand-in the fake ComfyUI/GGUF repos need, plus the upgrade trap."""
    dists = [
        _torch(torch),
        _torch_companion("torchvision", torchvision, torch),
        _torch_companion("torchaudio", torchaudio, torch),
    ]
    if torch != TRAP_TORCH:
        dists += [
            _torch(TRAP_TORCH),
            _torch_companion("torchvision", TRAP_TORCHVISION, TRAP_TORCH),
            _torch_companion("torchaudio", TRAP_TORCHAUDIO, TRAP_TORCH),
        ]
    dists += [
        # The trap: the newest kornia wants a newer torch than the pin.
        _simple("kornia", "0.7.0", ("torch>=1.9.1", "packaging")),
        _simple("kornia", "0.8.1", ("torch>=1.9.1", "packaging")),
        _simple("kornia", "0.9.0", (f"torch>={TRAP_TORCH}", "packaging")),
        _simple("torchsde", "0.2.6", ("torch>=1.6.0", "numpy>=1.19", "trampoline>=0.1.2")),
        _simple("trampoline", "0.1.2"),
        _simple("numpy", "1.26.4"),
        _simple("einops", "0.8.1"),
        _simple("transformers", "4.57.1", ("tokenizers>=0.22.0,<=0.23.0", "safetensors>=0.4.3",
                                           "numpy>=1.17", "requests", "packaging>=20.0", "tqdm>=4.27")),
        _simple("tokenizers", "0.22.1"),
        _simple("safetensors", "0.6.2"),
        _simple("spandrel", "0.4.1", ("torch", "torchvision", "safetensors", "numpy", "einops")),
        _simple("tqdm", "4.67.1"),
        _simple("requests", "2.32.5"),
        _simple("packaging", "25.0"),
        _simple("filelock", "3.19.1"),
        _simple("typing-extensions", "4.15.0", module="typing_extensions_standin"),
        # ComfyUI-GGUF's requirements.txt
        _simple("gguf", "0.17.1", ("numpy>=1.17",)),
        _simple("sentencepiece", "0.2.1"),
        _simple("protobuf", "6.32.1", module="google_protobuf_standin"),
    ]
    return dists


def _metadata(dist: Dist) -> str:
    lines = [
        "Metadata-Version: 2.1",
        f"Name: {dist.name}",
        f"Version: {dist.version}",
        f"Summary: {dist.summary or 'Stand-in distribution (tests only)'}",
    ]
    if dist.requires_python:
        lines.append(f"Requires-Python: {dist.requires_python}")
    lines += [f"Requires-Dist: {req}" for req in dist.requires]
    return "\n".join(lines) + "\n\nSTAND-IN built by tests/harness/wheelhouse.py; not the real project.\n"


def _record_hash(data: bytes) -> str:
    digest = hashlib.sha256(data).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def build_wheel(dist: Dist, dest: Path) -> Path:
    """Write ``dist`` as a deterministic py3-none-any wheel into ``dest``; return its path."""
    files = dict(dist.files) or {
        f"{_normalize(dist.name)}/__init__.py": _stand_in_module(dist.name, _normalize(dist.name), dist.version)
    }
    info = f"{_normalize(dist.name)}-{dist.version}.dist-info"
    entries: list[tuple[str, bytes]] = [(p, t.encode("utf-8")) for p, t in sorted(files.items())]
    entries.append((f"{info}/METADATA", _metadata(dist).encode("utf-8")))
    entries.append((f"{info}/WHEEL", (
        "Wheel-Version: 1.0\nGenerator: provision-tests-wheelhouse\n"
        "Root-Is-Purelib: true\nTag: py3-none-any\n").encode("utf-8")))
    entries.append((f"{info}/top_level.txt",
                    "".join(sorted({p.split("/")[0] + "\n" for p in files})).encode("utf-8")))
    record = "".join(f"{p},{_record_hash(d)},{len(d)}\n" for p, d in entries)
    record += f"{info}/RECORD,,\n"
    entries.append((f"{info}/RECORD", record.encode("utf-8")))

    dest.mkdir(parents=True, exist_ok=True)
    path = dest / wheel_filename(dist.name, dist.version)
    tmp = path.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries:
            zi = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
            zi.external_attr = 0o100644 << 16
            zi.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(zi, data)
    tmp.replace(path)
    path.chmod(0o644)
    return path


def _spec_digest(dists: list[Dist]) -> str:
    blob = json.dumps(
        [_FORMAT] + [[d.name, d.version, list(d.requires), d.requires_python, sorted(d.files.items())]
                     for d in dists],
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def build_wheelhouse(dest: Path, *, torch: str = "2.3.1", torchvision: str = "0.18.1",
                     torchaudio: str = "2.3.1", extra: Mapping[str, str | Dist] | None = None,
                     uv: bool = False) -> Path:
    """Build the stand-in wheelhouse in ``dest`` (created, made world-readable) and return it.

    ``extra`` adds distributions: ``{"name": "1.0"}`` for a plain stand-in module, or
    ``{"name": Dist(...)}`` for full control. ``uv`` adds the real uv wheel (``uv_wheel()``).
    A wheelhouse already built in ``dest`` from the same specification is reused as is (a
    marker file records the specification).
    """
    dists = standard_dists(torch, torchvision, torchaudio)
    for name, spec in (extra or {}).items():
        dists.append(spec if isinstance(spec, Dist) else _simple(name, spec))
    real = [uv_wheel()] if uv else []
    names = [wheel_filename(d.name, d.version) for d in dists] + [wheel.name for wheel in real]
    dest = Path(dest)
    digest = _spec_digest(dists) if not real else \
        hashlib.sha256((_spec_digest(dists) + "".join(w.name for w in real)).encode()).hexdigest()[:16]
    marker = dest / f".wheelhouse-{digest}"
    if marker.exists() and all((dest / name).exists() for name in names):
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    dest.chmod(0o755)
    for old in dest.glob(".wheelhouse-*"):
        old.unlink()
    for stale in dest.glob("*.whl"):
        if stale.name not in names:
            stale.unlink()
    for dist in dists:
        build_wheel(dist, dest)
    for wheel in real:
        _link_or_copy(wheel, dest / wheel.name)
    marker.write_text("\n".join(names) + "\n")
    marker.chmod(0o644)
    return dest


def _link_or_copy(source: Path, target: Path) -> None:
    if target.exists():
        target.unlink()
    try:
        os.link(source, target)
    except OSError:  # another file system
        shutil.copyfile(source, target)
        target.chmod(0o644)


def _cache_root() -> Path:
    """Return the folder that keeps downloads across test sessions (readable by node users)."""
    configured = os.environ.get("PROVISION_HARNESS_CACHE")
    if configured:
        root = Path(configured)
    elif os.geteuid() == 0:
        from .sshd import nodes_root  # root-owned /tmp/provision-harness, checked there

        root = nodes_root() / "cache"
    else:
        root = Path(tempfile.gettempdir()) / f"provision-harness-cache-{os.getuid()}"
    root.mkdir(mode=0o755, parents=True, exist_ok=True)
    return root


def uv_wheel(version: str | None = None) -> Path:
    """Return the real uv wheel for this machine, downloading it from PyPI once per cache.

    ``version`` defaults to the tool's pin (``provisioner.install.steps.installer.UV_VERSION``).
    Concurrent callers (xdist workers) wait on a file lock; the wheel lands in the cache by an
    atomic rename, world-readable, so node users can install it.
    """
    if version is None:
        from provisioner.install.steps.installer import UV_VERSION

        version = UV_VERSION
    root = _cache_root()
    folder = root / f"uv-{version}"
    with open(root / ".uv.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        found = sorted(folder.glob(f"uv-{version}-*.whl"))
        if found:
            return found[0]
        staging = Path(tempfile.mkdtemp(prefix=".uv-download-", dir=root))
        try:
            env = isolated_pip_env()
            if os.environ.get("PIP_CERT"):  # a site CA bundle is needed to reach PyPI here
                env["PIP_CERT"] = os.environ["PIP_CERT"]
            done = subprocess.run(
                [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                 "-d", str(staging), f"uv=={version}"],
                capture_output=True, text=True, timeout=600, env=env)
            wheels = sorted(staging.glob(f"uv-{version}-*.whl"))
            if done.returncode != 0 or not wheels:
                raise RuntimeError(
                    f"could not download the uv {version} wheel from PyPI for the test "
                    f"wheelhouse (pip download exited {done.returncode}): "
                    f"{(done.stderr or done.stdout).strip()[-600:]}")
            wheels[0].chmod(0o644)
            staging.chmod(0o755)
            shutil.rmtree(folder, ignore_errors=True)  # a partial folder of an older attempt
            staging.rename(folder)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return sorted(folder.glob(f"uv-{version}-*.whl"))[0]


def constraints_text(torch: str = "2.3.1", torchvision: str = "0.18.1", torchaudio: str = "2.3.1") -> str:
    """Return the constraints file a correct install uses (the pins, one per line)."""
    return f"torch=={torch}\ntorchvision=={torchvision}\ntorchaudio=={torchaudio}\n"


def isolated_pip_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Return an environment in which pip ignores this machine's pip configuration.

    This machine sets ``PIP_FIND_LINKS``, a global ``constraint`` (torch<=2.14.1) and extra
    index URLs (``/etc/xdg/pip/pip.conf``); a test of ``--no-index --find-links WHEELHOUSE``
    must not see them. Drops every ``PIP_*`` variable and sets ``PIP_CONFIG_FILE`` to the
    null device (pip then loads no configuration file).
    """
    env = {k: v for k, v in (os.environ if base is None else base).items() if not k.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PIP_NO_INPUT"] = "1"
    return env

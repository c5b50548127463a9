"""Shared helpers of the packaging tests (tests/deploy/): repository paths and tool lookup.

The tools come from `scripts/deps.sh deploy` (ctest runs it first, as the fixture test
deploy.tools). A missing tool fails the test that needs it, with the command that installs it;
nothing is skipped.
"""

import os
import shutil
import subprocess

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TOOLS = os.path.join(REPO, ".tools")
INSTALL_HINT = "run scripts/deps.sh deploy (ctest runs it as the test deploy.tools)"


def repo_path(*parts):
    return os.path.join(REPO, *parts)


def read_text(*parts):
    with open(repo_path(*parts), encoding="utf-8") as f:
        return f.read()


def run(argv, timeout=120, **kwargs):
    """Runs argv, capturing text output; bounded by `timeout` seconds."""
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          timeout=timeout, check=False, **kwargs)


def dockerfilelint():
    """Path of dockerfilelint (.tools/ from the lockfile, else PATH), or None."""
    local = os.path.join(TOOLS, "node_modules", ".bin", "dockerfilelint")
    if os.access(local, os.X_OK):
        return local
    return shutil.which("dockerfilelint")


def kubectls():
    """Every kubectl to render with: the one on PATH and, when deps.sh unpacked it, Debian's
    (kustomize v2.0.3) from .tools/debian-kubectl/. Returns [(label, path)]."""
    found = []
    on_path = shutil.which("kubectl")
    if on_path:
        found.append(("kubectl on PATH", on_path))
    debian = os.path.join(TOOLS, "debian-kubectl", "usr", "bin", "kubectl")
    if os.access(debian, os.X_OK):
        found.append(("Debian kubernetes-client (.tools/debian-kubectl)", debian))
    return found


def kubectl_version(path):
    out = run([path, "version", "--client"], timeout=60)
    return (out.stdout + out.stderr).strip()


def is_debian_kubectl(path):
    """True for Debian 12's kubernetes-client (kubectl 1.20, kustomize v2.0.3)."""
    return 'GitVersion:"v1.20.' in kubectl_version(path)


def keygate_bin():
    """The keygate binary under test (KEYGATE_BIN, set by ctest), or None."""
    path = os.environ.get("KEYGATE_BIN", "")
    return os.path.abspath(path) if path and os.access(path, os.X_OK) else None


def parse_duration_ms(text):
    """keygate's duration syntax (config/README.md): a number with ms, s, m or h."""
    text = str(text).strip()
    for unit, factor in (("ms", 1), ("s", 1000), ("m", 60_000), ("h", 3_600_000)):
        if text.endswith(unit):
            number = text[: -len(unit)]
            if number.isdigit():
                return int(number) * factor
    raise ValueError(f"not a keygate duration: {text!r}")

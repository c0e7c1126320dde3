# Sourced by scripts/demo and scripts/test: find the repository, make .venv, install into it.
#
# ensure_venv EXTRAS creates .venv with ${PYTHON:-python3} when it is missing (or
# broken, or PYTHON names another Python version) and runs
# `pip install -e '.[EXTRAS]'`, skipping the install while a stamp file in .venv
# still matches pyproject.toml, setup.py, the extras and the interpreter.

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO_ROOT/.venv"
VENV_PY="$VENV/bin/python"

say() { printf '==> %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Print "major.minor" of the interpreter $1, or nothing if it does not run.
_py_version() {
  "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || true
}

_make_venv() {
  local python="${PYTHON:-python3}"
  local have want
  want="$(_py_version "$python")"
  [ -n "$want" ] || die "'$python' does not run as a Python interpreter (set PYTHON=...)"
  have="$(_py_version "$VENV_PY")"
  if [ -n "$have" ] && [ -n "${PYTHON:-}" ]; then
    if [ "$have" != "$want" ]; then
      say "PYTHON=$PYTHON is Python $want but .venv has $have; recreating .venv"
      have=""
    fi
  fi
  if [ -z "$have" ]; then
    if [ -e "$VENV" ]; then rm -rf "$VENV"; fi
    say "Creating .venv with $python (Python $want)"
    "$python" -m venv "$VENV" || die "'$python -m venv' failed (on Debian/Ubuntu: apt-get install python3-venv)"
  fi
}

# The stamp: a digest of what the install depends on.
_install_digest() {
  "$VENV_PY" - "$REPO_ROOT" "$1" <<'PY'
import hashlib, sys
from pathlib import Path
root, extras = Path(sys.argv[1]), sys.argv[2]
h = hashlib.sha256(f"{root}\n{extras}\n{sys.version}\n".encode())
for name in ("pyproject.toml", "setup.py"):
    path = root / name
    h.update(path.read_bytes() if path.exists() else b"-")
print(h.hexdigest())
PY
}

# True when `keyedcache` imports, from outside the repository, out of this checkout.
_installed_here() {
  (cd / && "$VENV_PY" -c '
import sys, keyedcache
from pathlib import Path
sys.exit(Path(keyedcache.__file__).resolve().parent.parent != Path(sys.argv[1]))
' "$REPO_ROOT") >/dev/null 2>&1
}

ensure_venv() {
  local extras="$1"
  _make_venv
  local stamp="$VENV/.keyedcache-install-${extras//[^a-z0-9]/_}"
  local digest
  digest="$(_install_digest "$extras")"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$digest" ] && _installed_here; then
    return 0
  fi
  say "Installing django-keyedcache[$extras] (editable) into .venv"
  "$VENV_PY" -m pip install --quiet --disable-pip-version-check -e "$REPO_ROOT[$extras]"
  printf '%s\n' "$digest" >"$stamp"
}

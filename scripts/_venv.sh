# shellcheck shell=bash
# ensure_venv REQUIREMENTS: create .venv with Python 3.11+ and install REQUIREMENTS into it,
# reinstalling only when the requirement files change.
ensure_venv() {
  local reqs="$1" py="${PYTHON:-python3}"
  "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
    echo "Python 3.11 or newer is needed (found: $("$py" --version 2>&1))" >&2; return 1; }
  [ -x .venv/bin/python ] || "$py" -m venv .venv
  local stamp=".venv/.installed-$(basename "$reqs")" sum
  sum=$(cat requirements*.txt | sha256sum | cut -d' ' -f1)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$sum" ]; then
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -r "$reqs"
    echo "$sum" > "$stamp"
  fi
}

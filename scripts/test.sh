#!/usr/bin/env bash
# Install everything the tests need (Python packages, Chromium and Orthanc for the browser and
# PACS tests), check the code with ruff and mypy, and run every test. Works on a fresh Debian
# machine as root, and on a laptop where Chromium is already installed.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"

need_apt=()
command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || [ -n "${CHROMIUM_PATH:-}" ] || need_apt+=(chromium)
# A real Orthanc with its DICOMweb plugin for the PACS tests (started by the tests themselves).
command -v Orthanc >/dev/null 2>&1 || [ -x /usr/sbin/Orthanc ] || need_apt+=(orthanc)
ls /usr/share/orthanc/plugins/libOrthancDicomWeb.so* >/dev/null 2>&1 || need_apt+=(orthanc-dicomweb)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "Installing ${need_apt[*]} from Debian's packages..."
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # Debian's orthanc package would start a system service: tell invoke-rc.d not to.
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d.hounsfield
    chmod +x /usr/sbin/policy-rc.d.hounsfield
    [ -e /usr/sbin/policy-rc.d ] || ln -s /usr/sbin/policy-rc.d.hounsfield /usr/sbin/policy-rc.d
    apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
    [ "$(readlink /usr/sbin/policy-rc.d 2>/dev/null)" = /usr/sbin/policy-rc.d.hounsfield ] && rm -f /usr/sbin/policy-rc.d
    rm -f /usr/sbin/policy-rc.d.hounsfield
  else
    echo "Missing: ${need_apt[*]}. Install them (e.g. 'sudo apt-get install ${need_apt[*]}') or set CHROMIUM_PATH." >&2
    exit 1
  fi
fi

"$PYTHON" -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt

# The checks that run: lint and types first (each says what it found), then every test.
"$PYTHON" -m ruff check .
"$PYTHON" -m mypy
exec "$PYTHON" -m pytest "$@"

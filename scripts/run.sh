#!/usr/bin/env bash
# Install what the app needs and start it; it opens on the built-in sample CT.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
"$PYTHON" -m pip install --quiet --disable-pip-version-check -r requirements.txt
exec "$PYTHON" -m streamlit run streamlit_app.py "$@"

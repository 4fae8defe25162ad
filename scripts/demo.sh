#!/usr/bin/env bash
# The demo: installs glmasr-live, then plays the bundled recording through the live pipeline
# with the bundled demo model (terminal UI on a terminal, plain lines otherwise).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec "${PYTHON:-python3}" -m glmasr_live demo "$@"

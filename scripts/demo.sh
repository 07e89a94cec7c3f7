#!/usr/bin/env bash
# The README's demo command: installs what it needs, then runs the demo.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
exec deno task demo "$@"

#!/usr/bin/env bash
# Fails when a tracked file is a build output (target/, dist/, .venv/, .tools/,
# compiled objects) or larger than 1 MB. Run by `make lint` and `make test`.
set -euo pipefail
cd "$(dirname "$0")/.."
limit=$((1024 * 1024))
bad=0
while IFS= read -r -d '' f; do
  case "$f" in
    target/*|*/target/*|dist/*|.venv/*|.tools/*|.run/*|node_modules/*|*/node_modules/*|\
    *.wasm|*.o|*.a|*.so|*.rlib|*.pyc|*/__pycache__/*)
      echo "check-tree: build output is tracked: $f" >&2; bad=1; continue ;;
  esac
  if [ -f "$f" ]; then
    size=$(stat -c %s "$f")
    if [ "$size" -gt "$limit" ]; then
      echo "check-tree: tracked file over 1 MB ($size bytes): $f" >&2; bad=1
    fi
  fi
done < <(git ls-files -z)
if [ "$bad" -ne 0 ]; then
  echo "check-tree: remove these from git (git rm --cached) and add them to .gitignore" >&2
  exit 1
fi
echo "check-tree: ok ($(git ls-files | wc -l) tracked files, none a build output or over 1 MB)"

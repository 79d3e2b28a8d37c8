#!/usr/bin/env bash
# Builds the default training corpus from Debian's `fortunes` package: one plain-text document per
# fortune file (about 2.5 MB of English in all), with the '%' separator lines removed and the
# overstrike sequences (char, backspace, char) of a few files collapsed.
# Usage: scripts/fortunes-corpus.sh OUT_DIR   -> OUT_DIR/*.txt
set -euo pipefail
out=${1:?usage: fortunes-corpus.sh OUT_DIR}
src=/usr/share/games/fortunes
[ -d "$src" ] || { echo "fortunes-corpus: $src not found (apt-get install fortunes)" >&2; exit 1; }
mkdir -p "$out"
n=0
for f in "$src"/*; do
    case "$f" in *.dat|*.u8) continue ;; esac
    [ -L "$f" ] && continue
    [ -f "$f" ] || continue
    sed -e '/^%$/d' -e 's/.\x08//g' "$f" > "$out/$(basename "$f").txt"
    n=$((n + 1))
done
echo "fortunes-corpus: wrote $n documents to $out" >&2

#!/usr/bin/env bash
# The simulator's mutation check: each patch here breaks the engine in one
# way; the simulator must catch every break. For each, this applies the
# patch to the working tree, builds the release simulator, runs seeds from
# 0 until the first failing one (at most SEEDS, default 200), prints the
# first catching seed and the violation kinds it reported, and reverts the
# patch. Run from the repository root on a clean tree:
#
#     sync-conformance/mutations/run.sh            # every break
#     SEEDS=50 sync-conformance/mutations/run.sh d-no-causal-comparison
#
# The patches:
#   a-apply-duplicates      a receiver never recognises a packet it applied
#   b-drop-a-change         a receiver skips the first change of each packet
#   c-ignore-deletions      a receiver ignores a deletion that descends from
#                           its live version
#   d-no-causal-comparison  every version that differs from the one held is
#                           a conflict (the causal comparison is dropped)
#   e-no-orphan-rule        the hub never settles a live child under a
#                           deleted parent
set -euo pipefail
cd "$(dirname "$0")/../.."
here=sync-conformance/mutations
seeds=${SEEDS:-200}
if ! git diff --quiet -- sync-core; then
    echo "sync-core has uncommitted changes; commit or stash them first" >&2
    exit 2
fi
names=("$@")
if [ ${#names[@]} -eq 0 ]; then
    for p in "$here"/*.patch; do names+=("$(basename "$p" .patch)"); done
fi
build() {
    cargo build --release -q -p sync-conformance --features memory --bin simulate
}
printf '%-24s %-14s %s\n' break first_seed violations
for name in "${names[@]}"; do
    patch="$here/$name.patch"
    git apply "$patch"
    trap 'git apply -R "$patch"' EXIT
    build
    log=$(mktemp)
    first=none
    kinds=
    for ((s = 0; s < seeds; s++)); do
        if ! ./target/release/simulate --seed "$s" --no-determinism >"$log" 2>&1; then
            first=$s
            kinds=$(grep -oE '^  [A-Z][A-Za-z]+ at' "$log" | awk '{print $1}' | sort | uniq -c |
                awk '{printf "%s%s x%s", sep, $2, $1; sep=", "}')
            break
        fi
    done
    rm -f "$log"
    git apply -R "$patch"
    trap - EXIT
    printf '%-24s %-14s %s\n' "$name" "$first" "$kinds"
done
build

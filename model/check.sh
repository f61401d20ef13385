#!/bin/sh
# Model-check the failover/failback protocol (model/protocol.pml, docs/protocol.md).
#
# One spin search per property, each exhaustive at the bounds below (no bitstate, no
# compression), run under nice and a time limit; for each it prints states stored,
# transitions, memory and time, and fails when a property fails, when a search was cut
# short ("max search depth too small") or ran out of time or memory. Then the mutant
# (docs/protocol.md, "The mutant") must FAIL: spin must find its counterexample.
#
#   model/check.sh               the bounds of `make model-check`
#   model/check.sh --smoke       the smallest useful bounds (tests/unit/test_protocol_model.py)
#   BOUNDS="-DMAXLC=2" model/check.sh   extra -D flags (NS NC MAXLC MAXSF MAXMF NETCAP)
#   ONLY="single capacity" model/check.sh   some properties only ("all": in one search)
#
# Needs spin (Debian: apt-get install spin) and a C compiler.
set -u
here=$(cd "$(dirname "$0")" && pwd)
model="$here/protocol.pml"
work=$(mktemp -d "${TMPDIR:-/tmp}/blaze-model.XXXXXX")
trap 'rm -rf "$work"' EXIT

ALL="single bbm capacity storage pending recording_capacity"
if [ "${1:-}" = "--smoke" ]; then
    # every safety property in one search, one liveness formula, the mutant: three
    # compilations, under a minute in all
    bounds="-DNS=2 -DNC=2 -DMAXLC=1 -DMAXSF=1 -DMAXMF=0"
    live_bounds="-DNS=2 -DNC=2 -DMAXLC=0 -DMAXSF=1 -DMAXMF=0"
    limit=${LIMIT:-30}
    OPT=${OPT:--O0}   # compiling takes longer than these searches
    ONLY=${ONLY:-all}
    LIVE=${LIVE:-recording}
    mutant_bounds="-DNS=3 -DNC=3 -DMAXLC=0 -DMAXSF=1 -DMAXMF=0"
else
    bounds="-DNS=3 -DNC=4 -DMAXLC=1 -DMAXSF=1 -DMAXMF=0"
    live_bounds="-DNS=3 -DNC=3 -DMAXLC=0 -DMAXSF=1 -DMAXMF=0"
    limit=${LIMIT:-600}
    mutant_bounds="-DNS=3 -DNC=4 -DMAXLC=0 -DMAXSF=1 -DMAXMF=0"
fi
bounds="$bounds ${BOUNDS:-}"
safety=${ONLY:-$ALL}
liveness=${LIVE:-"pending_empty recording"}
depth=${DEPTH:-2000000}
memlim=${MEMLIM:-4096}

command -v spin >/dev/null || { echo "spin not found (apt-get install spin)"; exit 2; }
CC=${CC:-gcc}
failed=""

# run NAME EXPECT FLAGS PAN_ARGS: EXPECT is "hold" or "fail"
run() {
    name=$1 expect=$2 flags=$3 panargs=$4
    dir="$work/$name"
    mkdir -p "$dir" && cp "$model" "$dir/protocol.pml"
    started=$(date +%s)
    (cd "$dir" && spin -a $flags protocol.pml >spin.log 2>&1) || {
        echo "== $name: spin -a failed"; cat "$dir/spin.log"; failed="$failed $name"; return; }
    # -O1: pan.c is large and -O2 takes minutes to compile for little gain here
    (cd "$dir" && $CC ${OPT:--O1} -w -DMEMLIM="$memlim" -DVECTORSZ=4096 $flags -o pan pan.c) || {
        echo "== $name: compiling pan failed"; failed="$failed $name"; return; }
    (cd "$dir" && nice -n 15 timeout -s INT "$limit" ./pan -m"$depth" $panargs >pan.out 2>&1)
    out="$dir/pan.out"
    errors=$(sed -n 's/.*errors: \([0-9]*\).*/\1/p' "$out" | tail -1)
    states=$(awk '/states, stored/ {print $1}' "$out" | tail -1)
    trans=$(awk '/transitions \(= (stored|visited)\+matched\)/ {print $1}' "$out" | tail -1)
    mem=$(awk '/total actual memory usage/ {print $1}' "$out" | tail -1)
    secs=$(sed -n 's/^pan: elapsed time \([0-9.e+]*\).*/\1/p' "$out" | tail -1)
    verdict=ok
    if grep -q "max search depth too small" "$out"; then verdict="depth limit hit"; fi
    if grep -qE "Interrupted|out of memory|pan: reached -DMEMLIM" "$out"; then verdict="cut short"; fi
    [ -n "$errors" ] || verdict="no result"
    echo "== $name [$flags $panargs]"
    echo "   states stored ${states:-?}, transitions ${trans:-?}, memory ${mem:-?} MB," \
         "search ${secs:-?} s, wall $(( $(date +%s) - started )) s, errors ${errors:-?}"
    if [ "$expect" = hold ]; then
        if [ "$verdict" = ok ] && [ "$errors" = 0 ]; then
            echo "   holds"
        else
            echo "   FAILS ($verdict, errors ${errors:-?})"
            grep -E "assertion violated|acceptance cycle|invalid end state" "$out" | head -3
            if [ -f "$dir/protocol.pml.trail" ]; then
                cp "$dir/protocol.pml.trail" "$here/$name.trail"
                cp "$dir/protocol.pml" "$here/$name.pml.trailsource"
                echo "   trail: spin -t -p -k model/$name.trail model/$name.pml.trailsource"
            fi
            failed="$failed $name"
        fi
    else
        if [ -n "$errors" ] && [ "$errors" -gt 0 ]; then
            echo "   counterexample found, as it must be:"
            grep -E "assertion violated|acceptance cycle" "$out" | head -1
        else
            echo "   NO counterexample: the checker missed the mutant's bug"
            failed="$failed $name"
        fi
    fi
}

for p in $safety; do
    if [ "$p" = all ]; then
        run all hold "$(for q in $ALL; do printf -- '-DPROP_%s ' "$q"; done)$bounds" ""
    else
        run "$p" hold "-DPROP_$p $bounds" ""
    fi
done
for p in $liveness; do
    run "live-$p" hold "-DLIVENESS -DNFAIR=4 $live_bounds" "-a -f -N $p"
done
# The mutant: the claim goes out with the releases and the agent claims without its
# epoch check. Break-before-make (bbm) must catch it; a small bound suffices.
run mutant-bbm fail "-DPROP_bbm -DMUTANT_BBM $mutant_bounds" ""

if [ -n "$failed" ]; then
    echo "model check FAILED:$failed"
    exit 1
fi
echo "model check passed"

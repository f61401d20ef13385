#!/bin/sh
# Model-check the failover/failback protocol (model/protocol.pml, docs/protocol.md).
#
# One spin search per property, each exhaustive at the bounds below (no bitstate, no hash
# compaction: only the wide mode's supplement is not exhaustive, and says so), run under
# nice and a time limit; for each it prints states stored,
# transitions, memory, search time (and CPU time where /usr/bin/time exists), and fails
# when a property fails, when a search was cut short ("max search depth too small", time,
# memory) or when the model's channels were too small. Then the mutant
# (docs/protocol.md, "The mutant") must FAIL: spin must find its counterexample.
#
#   model/check.sh               the bounds of `make model-check` (about 5-10 minutes)
#   model/check.sh --smoke       small bounds, about 20 s (tests/unit/test_protocol_model.py)
#   model/check.sh --cross-check the reductions lose nothing: at small bounds the states
#                                the properties read are the same set with and without
#                                the model's canonical form (-DNOCANON)
#   BOUNDS=wide model/check.sh   the issue's bound with two server faults: every safety
#                                property in one exhaustive search (-DCOLLAPSE, about 3 GB
#                                and 5-10 minutes), then a hash-compact search with one
#                                message fault as well (-DHC4: NOT exhaustive, a supplement;
#                                6 GB, about 35 minutes), then liveness with one leader
#                                change and two server faults (about 10 minutes)
#   BOUNDS="-DMAXMF=1" model/check.sh   extra -D flags (NS NC MAXLC MAXSF MAXMF NETCAP ANSCAP)
#   ONLY="single capacity" model/check.sh   some safety properties only ("all": in one search)
#   LIVE="recording" model/check.sh         some liveness formulas only (" ": none)
#   MUTANT=no model/check.sh               skip the mutant
#   SUPPLEMENT=no BOUNDS=wide model/check.sh   skip the wide mode's hash-compact supplement
#   CROSS_BOUNDS="-DNS=3 -DNC=2 -DMAXLC=0 -DMAXSF=2 -DMAXMF=0" model/check.sh --cross-check
#                                other bounds for the cross-check, one per line
#
# Needs spin (Debian: apt-get install spin) and a C compiler.
set -u
here=$(cd "$(dirname "$0")" && pwd)
model="$here/protocol.pml"
work=$(mktemp -d "${TMPDIR:-/tmp}/blaze-model.XXXXXX")
trap 'rm -rf "$work"' EXIT

ALL="single bbm capacity storage pending recording_capacity"
mode=default
[ "${1:-}" = "--smoke" ] && mode=smoke
[ "${1:-}" = "--cross-check" ] && mode=cross
[ "${BOUNDS:-}" = wide ] && mode=wide
extra=""
[ "$mode" = default ] && extra=${BOUNDS:-}
supplement=""
live_bounds="-DNS=3 -DNC=4 -DMAXLC=2 -DMAXSF=1 -DMAXMF=0"
mutant_bounds="-DNS=3 -DNC=4 -DMAXLC=0 -DMAXSF=1 -DMAXMF=0"
case $mode in
smoke)
    # every safety property in one search, one liveness formula, the mutant: three
    # compilations and searches of a few seconds each
    bounds="-DNS=3 -DNC=4 -DMAXLC=1 -DMAXSF=1 -DMAXMF=1"
    live_bounds="-DNS=3 -DNC=4 -DMAXLC=1 -DMAXSF=1 -DMAXMF=0"
    limit=${LIMIT:-30}
    OPT=${OPT:--O0}   # the searches are short: -O2 would save no more than it costs
    ONLY=${ONLY:-all}
    LIVE=${LIVE:-recording}
    ;;
wide)
    # the issue's example bound (3 servers, 4 cameras, 2 leader changes) with 2 server
    # faults, every safety property in one search: the same state space as one search
    # per property, explored once (the properties are assertions, not never claims)
    bounds="-DNS=3 -DNC=4 -DMAXLC=2 -DMAXSF=2 -DMAXMF=0 -DNETCAP=24 -DCOLLAPSE"
    limit=${LIMIT:-2400}
    ONLY=${ONLY:-all}
    live_bounds="-DNS=3 -DNC=4 -DMAXLC=1 -DMAXSF=2 -DMAXMF=0 -DNETCAP=24"
    MUTANT=${MUTANT:-no}
    memlim_default=11000
    hash=${HASH:--w27}
    # and, as a supplement that is NOT exhaustive, one message fault as well: hash
    # compaction keeps a 96-bit signature of each state, not the state, so two states
    # with one signature would count as one (spin prints the odds)
    supplement="-DNS=3 -DNC=4 -DMAXLC=2 -DMAXSF=2 -DMAXMF=1 -DNETCAP=24 -DHC4"
    ;;
cross)
    bounds=""
    limit=${LIMIT:-600}
    ;;
*)
    bounds="-DNS=3 -DNC=4 -DMAXLC=2 -DMAXSF=1 -DMAXMF=2"
    limit=${LIMIT:-600}
    # At one server fault nothing is ever left on a server that comes back holding a
    # guest's channel: its own cameras all come home by a claim. Two server faults with
    # two message faults, one camera, reach the leftover release, lost or repeated.
    leftover="-DNS=3 -DNC=1 -DMAXLC=1 -DMAXSF=2 -DMAXMF=2 -DNETCAP=24 -DCOLLAPSE"
    ;;
esac
bounds="$bounds $extra"
safety=${ONLY:-$ALL}
liveness=${LIVE:-"pending_empty recording"}
depth=${DEPTH:-100000}
memlim=${MEMLIM:-${memlim_default:-4096}}
hash=${hash:-}

command -v spin >/dev/null || { echo "spin not found (apt-get install spin)"; exit 2; }
CC=${CC:-gcc}
cputime=""
[ -x /usr/bin/time ] && cputime="/usr/bin/time -f %U -o cpu.txt"
failed=""

# run NAME EXPECT FLAGS PAN_ARGS: EXPECT is "hold", "fail" or "supplement"
run() {
    name=$1 expect=$2 flags=$3 panargs=$4
    dir="$work/$name"
    mkdir -p "$dir" && cp "$model" "$dir/protocol.pml"
    started=$(date +%s)
    (cd "$dir" && spin -a $flags protocol.pml >spin.log 2>&1) || {
        echo "== $name: spin -a failed"; cat "$dir/spin.log"; failed="$failed $name"; return; }
    (cd "$dir" && $CC ${OPT:--O2} -w -DMEMLIM="$memlim" -DVECTORSZ=4096 $flags -o pan pan.c) || {
        echo "== $name: compiling pan failed"; failed="$failed $name"; return; }
    (cd "$dir" && nice -n 15 $cputime timeout -s INT "$limit" ./pan -m"$depth" $panargs \
        >pan.out 2>&1)
    out="$dir/pan.out"
    errors=$(sed -n 's/.*errors: \([0-9]*\).*/\1/p' "$out" | tail -1)
    states=$(awk '/states, stored/ {print $1}' "$out" | tail -1)
    trans=$(awk '/transitions \(= (stored|visited)\+matched\)/ {print $1}' "$out" | tail -1)
    mem=$(awk '/total actual memory usage/ {print $1}' "$out" | tail -1)
    secs=$(sed -n 's/^pan: elapsed time \([0-9.e+]*\).*/\1/p' "$out" | tail -1)
    reached=$(sed -n 's/.*depth reached \([0-9]*\).*/\1/p' "$out" | tail -1)
    cpu=$(cat "$dir/cpu.txt" 2>/dev/null | tail -1)
    verdict=ok
    if grep -q "max search depth too small" "$out"; then verdict="depth limit hit"; fi
    if grep -qE "Interrupted|out of memory|pan: reached -DMEMLIM" "$out"; then verdict="cut short"; fi
    [ -n "$errors" ] || verdict="no result"
    echo "== $name [$flags $panargs]"
    echo "   states stored ${states:-?}, transitions ${trans:-?}, depth ${reached:-?}," \
         "memory ${mem:-?} MB, search ${secs:-?} s (cpu ${cpu:-?} s), wall" \
         "$(( $(date +%s) - started )) s, errors ${errors:-?}"
    case $expect in
    hold)
        if [ "$verdict" = ok ] && [ "$errors" = 0 ]; then
            echo "   holds"
        else
            echo "   FAILS ($verdict, errors ${errors:-?})"
            grep -E "assertion violated|acceptance cycle|invalid end state" "$out" | head -3
            if grep -q "q_full" "$out"; then
                echo "   (a channel of the model was full: raise -DNETCAP or -DANSCAP;" \
                     "not a protocol bug)"
            fi
            if [ -f "$dir/protocol.pml.trail" ]; then
                cp "$dir/protocol.pml.trail" "$here/$name.trail"
                cp "$dir/protocol.pml" "$here/$name.pml.trailsource"
                echo "   trail: spin -t -p -k model/$name.trail $flags model/$name.pml.trailsource"
            fi
            failed="$failed $name"
        fi ;;
    supplement)
        grep -E "Hash-Compact|hash factor|hash conflicts|Bit statespace" "$out" | head -3 |
            sed 's/^[[:space:]]*/   /'
        [ "$verdict" = ok ] || echo "   (cut short: $verdict)"
        if [ "$errors" = 0 ]; then
            echo "   no violation found (hash-compact: NOT exhaustive, a supplement only)"
        else
            echo "   FAILS (errors ${errors:-?})"
            grep -E "assertion violated" "$out" | head -3
            failed="$failed $name"
        fi ;;
    fail)
        # the bbm assertion itself (it reads rf[]), not one of the model's own checks
        if [ -n "$errors" ] && [ "$errors" -gt 0 ] &&
            grep "assertion violated" "$out" | grep -q "rf\["; then
            echo "   counterexample found, as it must be:"
            grep -E "assertion violated|acceptance cycle" "$out" | head -1
        else
            echo "   NO counterexample: the checker missed the mutant's bug"
            failed="$failed $name"
        fi ;;
    esac
}

all_props=$(for q in $ALL; do printf -- '-DPROP_%s ' "$q"; done)

defifs=$IFS
# --cross-check: the lines -DPROJECT prints (what the properties read, per state) are the
# same set with and without the canonical form. Without it dead messages stay in flight,
# so the channels are made larger in both.
if [ "$mode" = cross ]; then
    cross_bounds=${CROSS_BOUNDS:-"-DNS=3 -DNC=4 -DMAXLC=1 -DMAXSF=1 -DMAXMF=0
-DNS=2 -DNC=2 -DMAXLC=1 -DMAXSF=1 -DMAXMF=1
-DNS=2 -DNC=3 -DMAXLC=2 -DMAXSF=2 -DMAXMF=1
-DNS=3 -DNC=1 -DMAXLC=0 -DMAXSF=2 -DMAXMF=0"}
    nl='
'
    IFS=$nl
    for b in $cross_bounds; do
        IFS=$defifs
        for v in canon NOCANON; do
            dir="$work/cross-$v"
            rm -rf "$dir"; mkdir -p "$dir" && cp "$model" "$dir/protocol.pml"
            f="-DSAFETY -DPROJECT -DPRINTF $all_props$b -DNETCAP=40 -DANSCAP=40 -DCOLLAPSE"
            [ $v = NOCANON ] && f="$f -DNOCANON"
            (cd "$dir" && spin -a -o2 $f protocol.pml >spin.log 2>&1 &&
                $CC -O2 -w -DMEMLIM="$memlim" -DVECTORSZ=4096 $f -o pan pan.c &&
                nice -n 15 timeout -s INT "$limit" ./pan -m"$depth" -w25 |
                awk '/^P / { if (!seen[$0]++) print; next } { print >"pan.out" }' |
                sort >"$work/proj-$v")
            echo "== $b, $v: $(sed -n 's/^ *\([0-9]*\) states, stored.*/\1/p' "$dir/pan.out")" \
                 "states, $(wc -l <"$work/proj-$v") distinct projections," \
                 "errors $(sed -n 's/.*errors: \([0-9]*\).*/\1/p' "$dir/pan.out")"
            grep -qE "Interrupted|out of memory|errors: [1-9]" "$dir/pan.out" &&
                failed="$failed $v"
        done
        if cmp -s "$work/proj-canon" "$work/proj-NOCANON" && [ -s "$work/proj-canon" ]; then
            echo "   the same states"
        else
            echo "   DIFFERENT: $(comm -3 "$work/proj-canon" "$work/proj-NOCANON" | wc -l) lines"
            comm -3 "$work/proj-canon" "$work/proj-NOCANON" | head -5
            failed="$failed cross"
        fi
    done
    IFS=$defifs
    [ -n "$failed" ] && { echo "cross-check FAILED:$failed"; exit 1; }
    echo "cross-check passed"
    exit 0
fi

for p in $safety; do
    if [ "$p" = all ]; then
        run all hold "-DSAFETY $all_props$bounds" "$hash"
    else
        run "$p" hold "-DSAFETY -DPROP_$p $bounds" "$hash"
    fi
done
if [ -n "${leftover:-}" ] && [ "${LEFTOVER:-yes}" != no ]; then
    run all-leftover hold "-DSAFETY $all_props$leftover" ""
fi
if [ -n "$supplement" ] && [ "${SUPPLEMENT:-yes}" != no ]; then
    run all-hashcompact supplement "-DSAFETY $all_props$supplement" "-w28"
fi
for p in $liveness; do
    run "live-$p" hold "-DLIVENESS -DNFAIR=4 $live_bounds $extra" "-a -f -N $p"
done
# The mutant: the claim goes out with the releases and the agent claims without its
# epoch check. Break-before-make (bbm) must catch it; a small bound suffices.
if [ "${MUTANT:-yes}" != no ]; then
    run mutant-bbm fail "-DSAFETY -DPROP_bbm -DMUTANT_BBM $mutant_bounds" ""
fi

if [ -n "$failed" ]; then
    echo "model check FAILED:$failed"
    exit 1
fi
echo "model check passed"

#!/usr/bin/env bash
# The hot path at scale: the validated-versus-ceiling run of bench/run.sh on sites of 100,000,
# 1,000,000 and 10,000,000 web-service tokens (ten per user), each with requests spread
# uniformly over every token and with a Zipf-like skew, as real devices are.
#
#   bench/scale.sh                                   # SQLite, the default budget
#   SCALES="100000 1000000" SPREADS=uniform bench/scale.sh
#   BENCH_POSTGRES=postgres://postgres@127.0.0.1:5432/postgres SCALES=100000 bench/scale.sh
#
# For each site: seeds a fresh database, starts the server (USERKEYS_TOKEN_CACHE_MB as set, or
# the default), waits for the cache's warm-up, then for each spread: warm-up runs of validated
# calls until the cache's hit rate settles (at most WARM_RUNS), and ROUNDS
# rounds of the ceiling (GET /ping, DURATION) and of validated calls (core_webservice_get_site_info)
# and the same calls to a no-op shaped like them, in slices of SLICE: validated, no-op, no-op,
# validated. Prints the medians: requests/s, p99, the cache's hit
# rate over the validated runs (from /bench/token-cache) and the server's RSS, and what the usage
# recorder holds in memory (from /bench/usage), and for each round where the server's CPU went
# during the validated calls and during the no-op, by thread, and what each call cost it
# (bench/thread_cpu.py).
# Settings: SCALES, SPREADS (uniform zipf), ZIPF_S (1.0), DURATION (10s), SLICE (5s), ROUNDS (3), WARM_RUNS (30),
# WARM_MIN_RUNS (6), SOAK (0: seconds of validated calls after the rounds, then RSS again; the
# rounds end after about 2½ minutes of load, before the memory of a 10,000,000-token site has
# settled),
# CONNECTIONS (64), THREADS (2), PORT (18182), WRK_SCHED (unset; batch: see bench/common.sh);
# SEED_CACHE=dir keeps each seeded site (a SQLite file there, or a template database on
# PostgreSQL) and starts later runs from a copy of it.
set -euo pipefail
cd "$(dirname "$0")/.."

SCALES=${SCALES:-100000 1000000 10000000}
SPREADS=${SPREADS:-uniform zipf}
ZIPF_S=${ZIPF_S:-1.0}
DURATION=${DURATION:-10s}
SLICE=${SLICE:-5s}
ROUNDS=${ROUNDS:-3}
WARM_RUNS=${WARM_RUNS:-30}
WARM_MIN_RUNS=${WARM_MIN_RUNS:-6}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-2}
PORT=${PORT:-18182}
BASE="http://127.0.0.1:$PORT"

if ! command -v wrk >/dev/null; then
  echo "installing wrk (Debian package)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
fi
cargo build --release --bin userkeys --example bench_seed 2>&1 | tail -1
BIN=target/release/userkeys
[ -n "${CARGO_TARGET_DIR:-}" ] && BIN=$CARGO_TARGET_DIR/release/userkeys
SEED=$(dirname "$BIN")/examples/bench_seed

WORK=$(mktemp -d /tmp/userkeys-scale.XXXXXX)
NAME=
cleanup() {
  kill $(jobs -p) 2>/dev/null || true
  rm -rf "$WORK"
  [ -z "$NAME" ] || psql "$BENCH_POSTGRES" -qc "DROP DATABASE IF EXISTS $NAME WITH (FORCE)" >/dev/null 2>&1 || true
}
trap cleanup EXIT

. bench/common.sh
# The server's CPU by thread over wrk runs of one kind: cpu_snap before each, cpu_add KIND
# REQUESTS after it; thread_cpu.py report then tells the kind's total.
cpu_snap() { bench/thread_cpu.py snap "$SERVER_PID" >"$WORK/cpu.json"; CPU_T0=$(date +%s.%N); }
cpu_add() {
  bench/thread_cpu.py add "$SERVER_PID" "$WORK/cpu.json" "$WORK/cpu-$1.json" \
    "$(awk -v t0="$CPU_T0" -v t1="$(date +%s.%N)" 'BEGIN {print t1 - t0}')" "$2"
}
rss_mb() { awk -v k="$1" '$1 == k":" {printf "%.0f", $2/1024}' "/proc/$SERVER_PID/status"; }
stat_of() { curl -s "$BASE/bench/token-cache" | python3 -c "import json,sys; s=json.load(sys.stdin); print(s['$1'] if s else 0)"; }

# Calls spread over tokens 0..N-1, each made from its index as the seed made it; `uniform` or
# `zipf` (rank r with probability about 1/r^ZIPF_S; ranks scattered over the tokens by a
# multiplication modulo N, so the busy tokens are not the first ones the warm-up loads).
lua_calls() { # path tokens spread → a wrk script
cat <<LUA
local n, spread, s = $2, "$3", $ZIPF_S
local agents = {
  "Mozilla/5.0 (Linux; Android 15; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36 MoodleMobile 4.4.0 (44004)",
  "Mozilla/5.0 (iPhone; CPU iPhone OS 18_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 MoodleMobile 5.0.0 (50003)",
  "python-requests/2.28.2", "curl/8.5.0", "moodle-dl/2.3",
}
local heads, tail = {}, nil
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("id", threads)
end
function init(args)
  math.randomseed(os.time() * 100 + (id or 0))
  local hole = string.rep("X", 32)
  for a = 1, #agents do
    local r = wrk.format("POST", "$1",
      { ["Content-Type"] = "application/x-www-form-urlencoded", ["User-Agent"] = agents[a] },
      "wstoken=" .. hole .. "&wsfunction=core_webservice_get_site_info&moodlewsrestformat=json")
    local at = string.find(r, hole, 1, true)
    heads[a] = string.sub(r, 1, at - 1)
    tail = string.sub(r, at + 32)
  end
end
local top = (n + 1) ^ (1 - s)
local function pick()
  if spread == "uniform" then return math.random(n) - 1 end
  local u = math.random()
  local r
  if s == 1 then r = math.floor(math.exp(u * math.log(n + 1))) else r = math.floor(((top - 1) * u + 1) ^ (1 / (1 - s))) end
  if r < 1 then r = 1 elseif r > n then r = n end
  return math.fmod((r - 1) * 1000003, n)
end
request = function()
  local i = pick()
  local v = i * 7919
  local hi = math.floor(v / 4294967296)
  local token = string.format("be4c%020x%08x", hi, v - hi * 4294967296)
  return heads[i % #agents + 1] .. token .. tail
end
LUA
}


SUMMARY="$WORK/summary"
: >"$SUMMARY"
for N in $SCALES; do
  USERS=$((N / 10))
  # A kept seed (SEED_CACHE) is copied, so that every run starts from the same unused site.
  if [ -n "${BENCH_POSTGRES:-}" ]; then
    [ -z "$NAME" ] || psql "$BENCH_POSTGRES" -qc "DROP DATABASE IF EXISTS $NAME WITH (FORCE)" >/dev/null
    NAME="userkeys_scale_$$_$N"
    KEPT="userkeys_scale_seed_$N"
    DATABASE_URL="${BENCH_POSTGRES%/*}/$NAME"
    BACKEND=PostgreSQL
    if [ -n "${SEED_CACHE:-}" ] && psql "$BENCH_POSTGRES" -Atc "SELECT 1 FROM pg_database WHERE datname = '$KEPT'" | grep -q 1; then
      echo "== $N tokens, $USERS users ($BACKEND): copying the kept seed"
      psql "$BENCH_POSTGRES" -qc "CREATE DATABASE $NAME TEMPLATE $KEPT" >/dev/null
    else
      echo "== $N tokens, $USERS users ($BACKEND): seeding"
      psql "$BENCH_POSTGRES" -qc "CREATE DATABASE $NAME" >/dev/null
      $SEED "$DATABASE_URL" hot-path "$USERS" "$N" - | tail -1
      if [ -n "${SEED_CACHE:-}" ]; then
        psql "$BENCH_POSTGRES" -qc "CREATE DATABASE $KEPT TEMPLATE $NAME" >/dev/null
      fi
    fi
  else
    rm -f "$WORK"/bench.sqlite3*
    DATABASE_URL="sqlite://$WORK/bench.sqlite3"
    BACKEND=SQLite
    KEPT="${SEED_CACHE:-}/scale-$N.sqlite3"
    if [ -n "${SEED_CACHE:-}" ] && [ -f "$KEPT" ]; then
      echo "== $N tokens, $USERS users ($BACKEND): copying the kept seed"
      cp "$KEPT" "$WORK/bench.sqlite3"
    else
      echo "== $N tokens, $USERS users ($BACKEND): seeding"
      $SEED "$DATABASE_URL" hot-path "$USERS" "$N" - | tail -1
      if [ -n "${SEED_CACHE:-}" ]; then
        mkdir -p "$SEED_CACHE" && cp "$WORK/bench.sqlite3" "$KEPT"
      fi
    fi
  fi
  export DATABASE_URL
  if [ -z "${BENCH_POSTGRES:-}" ]; then
    echo "database: $(du -sh "$WORK" | cut -f1) on disk"
    # What a miss costs: the key with its owner and type's switch, found by its hash (the
    # statement of find_by_secret_hash in src/db/keys.rs).
    python3 - "$WORK/bench.sqlite3" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
sql = ("SELECT * FROM user_keys INNER JOIN users ON users.id = user_keys.user_id "
       "LEFT JOIN key_type_settings ON key_type_settings.key_type = user_keys.key_type WHERE user_keys.secret_hash = ?")
print("query plan of a miss:", "; ".join(row[3] for row in db.execute("EXPLAIN QUERY PLAN " + sql, ("x",))))
PY
  else
    psql "$DATABASE_URL" -Atc "EXPLAIN SELECT * FROM user_keys INNER JOIN users ON users.id = user_keys.user_id LEFT JOIN key_type_settings ON key_type_settings.key_type = user_keys.key_type WHERE user_keys.secret_hash = 'x'" | sed 's/^/query plan of a miss: /'
  fi
  start_server
  # Warm-up done: the cache stops growing.
  LAST=-1
  for _ in $(seq 1 600); do
    NOW=$(stat_of tokens); [ "$NOW" = "$LAST" ] && [ "$NOW" != 0 ] && break; LAST=$NOW; sleep 1
  done
  echo "warmed: $NOW tokens cached, $(( $(stat_of weight_bytes) >> 20 )) of $(( $(stat_of budget_bytes) >> 20 )) MB; RSS $(rss_mb VmRSS) MB"
  ANSWER_BYTES=$(curl -s -d "wstoken=$(printf 'be4c%028x' 0)&wsfunction=core_webservice_get_site_info&moodlewsrestformat=json" \
    "$BASE/webservice/rest/server.php" | wc -c)
  for SPREAD in $SPREADS; do
    lua_calls /webservice/rest/server.php "$N" "$SPREAD" >"$WORK/validate.lua"
    lua_calls "/ping?bytes=$ANSWER_BYTES" "$N" "$SPREAD" >"$WORK/shaped.lua"
    # Warm-up: validated calls until the cache's hit rate settles (it gains less than a point in
    # a run, after at least WARM_MIN_RUNS runs: a slow run gains little however far from settled),
    # as on a site that has been running rather than one just started: a skewed load's busy
    # tokens come into the cache through misses. At most WARM_RUNS runs.
    LAST_HIT=-100
    for warm in $(seq 1 "$WARM_RUNS"); do
      H0=$(stat_of hits); M0=$(stat_of misses)
      read -r W_RPS _ _ _ _ < <(run_wrk "$CONNECTIONS" -s "$WORK/validate.lua" "$BASE/webservice/rest/server.php")
      H1=$(stat_of hits); M1=$(stat_of misses)
      HIT=$(awk -v h=$((H1 - H0)) -v m=$((M1 - M0)) 'BEGIN {printf "%.1f", (h + m) ? 100 * h / (h + m) : 0}')
      printf "  %s warm-up %d: validated %6.0f/s, hits %5s%%\n" "$SPREAD" "$warm" "$W_RPS" "$HIT"
      [ "$warm" -ge "$WARM_MIN_RUNS" ] && awk -v a="$HIT" -v b="$LAST_HIT" 'BEGIN {exit !(a - b < 1)}' && break
      LAST_HIT=$HIT
    done
    : >"$WORK/rounds"
    BAD=0
    for round in $(seq 1 "$ROUNDS"); do
      read -r C_RPS _ C_P99 _ _ < <(run_wrk "$CONNECTIONS" "$BASE/ping")
      H0=$(stat_of hits); M0=$(stat_of misses)
      rm -f "$WORK"/cpu-v.json "$WORK"/cpu-s.json
      : >"$WORK/slices"
      # Validated, no-op, no-op, validated: what the machine's speed does over the round falls
      # on both alike, and so does the server's background work (folding usage).
      for kind in v s s v; do
        if [ "$kind" = v ]; then SCRIPT=validate.lua; URL="$BASE/webservice/rest/server.php"; else SCRIPT=shaped.lua; URL="$BASE/ping"; fi
        cpu_snap
        read -r RPS _ P99 REQS B < <(DURATION=$SLICE run_wrk "$CONNECTIONS" -s "$WORK/$SCRIPT" "$URL")
        cpu_add "$kind" "$REQS"
        if [ "$kind" = v ]; then BAD=$((BAD + B)); fi
        echo "$kind $RPS $P99" >>"$WORK/slices"
      done
      H1=$(stat_of hits); M1=$(stat_of misses)
      # Each kind's requests/s and p99: the mean of its two slices (as long as each other).
      mean_of() { awk -v k="$1" -v c="$2" '$1 == k {s += $c; n++} END {printf "%.2f", s / n}' "$WORK/slices"; }
      V_RPS=$(mean_of v 2); V_P99=$(mean_of v 3); S_RPS=$(mean_of s 2); S_P99=$(mean_of s 3)
      HIT=$(awk -v h=$((H1 - H0)) -v m=$((M1 - M0)) 'BEGIN {printf "%.1f", (h + m) ? 100 * h / (h + m) : 0}')
      printf "  %s round %d: ceiling %6.0f/s p99 %6.2f ms | validated %6.0f/s p99 %6.2f ms, hits %5s%% | no-op %6.0f/s p99 %6.2f ms | validated/no-op %3.0f%%\n" \
        "$SPREAD" "$round" "$C_RPS" "$C_P99" "$V_RPS" "$V_P99" "$HIT" "$S_RPS" "$S_P99" "$(awk -v v="$V_RPS" -v s="$S_RPS" 'BEGIN {print 100 * v / s}')"
      echo "    during the validated calls, $(bench/thread_cpu.py report "$WORK/cpu-v.json")"
      echo "    during the no-op, $(bench/thread_cpu.py report "$WORK/cpu-s.json")"
      # The no-op's second slice against its first, adjacent on the same server: how far two
      # runs of the same calls differ on this machine, the noise any ratio here carries.
      SELF=$(awk '$1 == "s" {r[++n] = $2} END {printf "%.1f", 100 * r[2] / r[1]}' "$WORK/slices")
      echo "    the no-op against itself (second slice / first): $SELF%"
      echo "$C_RPS $C_P99 $V_RPS $V_P99 $S_RPS $S_P99 $HIT $SELF" >>"$WORK/rounds"
    done
    col() { awk -v c="$1" '{print $c}' "$WORK/rounds" | median; }
    RATIO=$(awk '{print $3 / $5}' "$WORK/rounds" | median)
    EACH=$(awk '{printf "%s%.0f", (NR > 1 ? ", " : ""), 100 * $3 / $5}' "$WORK/rounds")
    SELVES=$(awk '{printf "%s%.0f", (NR > 1 ? ", " : ""), $8}' "$WORK/rounds")
    printf "%-10s %-8s ceiling %6.0f/s | validated %6.0f/s p99 %6.2f ms | no-op %6.0f/s p99 %6.2f ms | validated/no-op %3.0f%% (%s; no-op/no-op %s) | hits %5.1f%% | RSS %s MB (peak %s)\n" \
      "$N" "$SPREAD" "$(col 1)" "$(col 3)" "$(col 4)" "$(col 5)" "$(col 6)" "$(awk -v r="$RATIO" 'BEGIN {print 100 * r}')" "$EACH" "$SELVES" "$(col 7)" \
      "$(rss_mb VmRSS)" "$(rss_mb VmHWM)" | tee -a "$SUMMARY"
    echo "  the usage recorder holds: $(curl -s "$BASE/bench/usage")"
    if [ "${SOAK:-0}" -gt 0 ]; then
      read -r SOAK_RPS _ _ _ _ < <(DURATION=${SOAK}s run_wrk "$CONNECTIONS" -s "$WORK/validate.lua" "$BASE/webservice/rest/server.php")
      printf "%-10s %-8s after %s s more of validated calls (%.0f/s): RSS %s MB (peak %s)\n" \
        "$N" "$SPREAD" "$SOAK" "$SOAK_RPS" "$(rss_mb VmRSS)" "$(rss_mb VmHWM)" | tee -a "$SUMMARY"
    fi
    [ "$BAD" = 0 ] || echo "WARNING: $BAD validated requests were not 2xx"
  done
  stop_server
done
echo "== summary (medians of $ROUNDS rounds: the ceiling $DURATION, validated and no-op in slices of $SLICE; $CONNECTIONS connections; $BACKEND; budget ${USERKEYS_TOKEN_CACHE_MB:-default} MB; wrk's scheduling: ${WRK_SCHED:-other})"
cat "$SUMMARY"

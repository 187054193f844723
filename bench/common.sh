# Shared by bench/run.sh and bench/scale.sh (sourced after they set WORK, PORT, BASE, BIN,
# THREADS and DURATION): the server under test, wrk's summary, and medians.

SERVER_PID=
start_server() {
  USERKEYS_BENCH_ENDPOINTS=true USERKEYS_BIND="127.0.0.1:$PORT" RUST_LOG="${SERVER_LOG:-error}" $BIN >"$WORK/server.log" 2>&1 &
  SERVER_PID=$!
  # A big database's warm-up can take a while before the first answer.
  for _ in $(seq 1 300); do curl -sf "$BASE/ping" >/dev/null && return; sleep 0.1; done
  echo "server did not start"; cat "$WORK/server.log"; exit 1
}
stop_server() { kill -TERM "$SERVER_PID"; wait "$SERVER_PID" || true; }

# wrk's summary → "requests/s p50_ms p99_ms total_requests non2xx"
# WRK_SCHED=batch runs wrk under SCHED_BATCH: its wake-ups then do not preempt the server, as
# clients on other machines would not (here they share its two cores; see the README).
run_wrk() {
  local out
  out=$(${WRK_SCHED:+chrt --"$WRK_SCHED" 0} wrk -t"$THREADS" -c"$1" -d"$DURATION" --latency "${@:2}")
  echo "$out" >>"$WORK/wrk.log"
  echo "$out" | awk '
    function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
    /Requests\/sec/ { rps = $2 }
    /^ +50%/ { p50 = ms($2) } /^ +99%/ { p99 = ms($2) }
    /requests in/ { total = $1 }
    /Non-2xx/ { bad = $4 }
    END { printf "%s %.2f %.2f %d %d\n", rps, p50, p99, total, bad + 0 }'
}
median() { sort -g | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }

# bench/lib.sh - shared by bench/profile.sh, bench/workers.sh and bench/idle-dhat.sh (sourced,
# after the script has set W to its work directory):
#   PIDS+=($!)        after starting a process with setsid, so that cleanup stops its group
#   cleanup           (trapped on EXIT INT TERM) SIGINT to every group, up to GRACE tenths of a
#                     second (default 50) for them to end, then SIGKILL, then rm -rf "$W"
#   port              a free loopback TCP port
#   ready PORT [S]    waits up to S seconds (default 10) for an HTTP answer on 127.0.0.1:PORT
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill -INT -- "-$p" 2>/dev/null || true; done
  for _ in $(seq "${GRACE:-50}"); do
    local alive=0
    for p in "${PIDS[@]}"; do kill -0 -- "-$p" 2>/dev/null && alive=1; done
    ((alive)) || break
    sleep 0.1
  done
  for p in "${PIDS[@]}"; do kill -KILL -- "-$p" 2>/dev/null || true; done
  rm -rf "$W"
}
trap cleanup EXIT INT TERM
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ready() {
  for _ in $(seq $((${2:-10} * 10))); do
    curl -fsS --max-time 1 "http://127.0.0.1:$1/" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "not ready on port $1" >&2; return 1
}

# bench/lib.sh - shared by bench/profile.sh, bench/workers.sh and bench/idle-dhat.sh (sourced,
# after the script has set W to its work directory):
#   PIDS+=($!)        after starting a process with setsid, so that cleanup stops its group
#   cleanup           (trapped on EXIT INT TERM) SIGINT to every group, up to GRACE tenths of a
#                     second (default 50) for them to end, then SIGKILL, then rm -rf "$W"
#   port              a free loopback TCP port
#   ready PORT [S]    waits up to S seconds (default 10) for an HTTP answer on 127.0.0.1:PORT
#   backend PORT...   (below) the loopback nginx backend the scripts measure against
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
# backend PORT...   starts one nginx (1 worker, keep-alive, no log) answering "hello, world" on
#                   127.0.0.1:PORT for every PORT, and waits until the first one answers
backend() {
  local listen="" p
  for p in "$@"; do listen+="listen 127.0.0.1:$p; "; done
  mkdir -p "$W/tmp"
  cat >"$W/backend.conf" <<CONF
worker_processes 1; daemon off; pid $W/backend.pid; error_log $W/backend-error.log warn;
events { worker_connections 1024; }
http {
  access_log off; keepalive_requests 1000000; keepalive_timeout 60s;
  client_body_temp_path $W/tmp/b; proxy_temp_path $W/tmp/p; fastcgi_temp_path $W/tmp/f;
  uwsgi_temp_path $W/tmp/u; scgi_temp_path $W/tmp/s;
  server { $listen location / { default_type text/plain; return 200 "hello, world\n"; } }
}
CONF
  setsid nginx -p "$W" -c "$W/backend.conf" -e "$W/backend-error.log" >"$W/backend.log" 2>&1 &
  PIDS+=($!)
  ready "$1" 10
}

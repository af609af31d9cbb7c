#!/usr/bin/env bash
# Keep one process running: `scripts/supervise.sh NAME COMMAND...` starts
# COMMAND and starts it again whenever it exits, after a pause that doubles
# (1 s up to 30 s) while it keeps dying young and starts over at 1 s once it
# ran a minute. SIGTERM/SIGINT stop the command and the supervisor.
set -u
name=$1
shift
child=
stopping=
trap 'stopping=1; [ -n "$child" ] && kill "$child" 2>/dev/null' TERM INT
pause=1
while [ -z "$stopping" ]; do
  started=$SECONDS
  "$@" &
  child=$!
  echo "[supervise] $name started (pid $child)" >&2
  wait "$child"
  status=$?
  # A signal ends `wait` early: wait for the command itself to end.
  while kill -0 "$child" 2>/dev/null; do wait "$child"; status=$?; done
  [ -n "$stopping" ] && break
  if [ $((SECONDS - started)) -ge 60 ]; then pause=1; fi
  echo "[supervise] $name exited with status $status: starting it again in ${pause} s" >&2
  sleep "$pause" & wait $!
  pause=$((pause * 2 > 30 ? 30 : pause * 2))
done
exit 0

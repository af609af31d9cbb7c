#!/usr/bin/env bash
# Keep one process running: `scripts/supervise.sh NAME COMMAND...` starts
# COMMAND and starts it again whenever it exits, after a pause that doubles
# (1 s up to 30 s) while it keeps dying young and starts over at 1 s once it
# ran a minute. SIGTERM/SIGINT stop the command and the supervisor (SIGKILL after STOP_SECONDS, 10, if the
# command has not ended by then).
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
  # A signal ends `wait` early: wait for the command itself to end. A stop that the command does not answer
  # in STOP_SECONDS (a worker loading its models hears SIGTERM only once the load is done) ends it with SIGKILL.
  deadline=$((SECONDS + ${STOP_SECONDS:-10}))
  while kill -0 "$child" 2>/dev/null; do
    if [ -n "$stopping" ] && [ "$SECONDS" -ge "$deadline" ]; then
      echo "[supervise] $name did not stop in ${STOP_SECONDS:-10} s: killing it" >&2
      kill -KILL "$child" 2>/dev/null
    fi
    sleep 0.2
  done
  wait "$child"
  status=$?
  [ -n "$stopping" ] && break
  if [ $((SECONDS - started)) -ge 60 ]; then pause=1; fi
  echo "[supervise] $name exited with status $status: starting it again in ${pause} s" >&2
  sleep "$pause" & wait $!
  pause=$((pause * 2 > 30 ? 30 : pause * 2))
done
exit 0

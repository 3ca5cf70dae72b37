#!/bin/sh
# cpu.sh SQLFILE TYPES ARGS N — CPU time the backend spends per execution (utime+stime from
# /proc), as fleetmon_app in org 1's tenant context with jit off, after 3 warm-up runs; and wall time.
sql=$(cat "$1"); types=$2; args=$3; n=${4:-20}
{
cat <<SQL
SELECT pg_backend_pid() AS pid \gset
\setenv PID :pid
BEGIN;
SET LOCAL ROLE fleetmon_app;
SET LOCAL jit = off;
SELECT set_config('fleetmon.org_id', '00000000-0000-0000-0000-000000000001', true) \g /dev/null
PREPARE q($types) AS $sql;
EXECUTE q($args) \g /dev/null
EXECUTE q($args) \g /dev/null
EXECUTE q($args) \g /dev/null
\! awk '{print "cpu_before", \$14+\$15}' /proc/\$PID/stat; date +"wall_before %s%N"
SQL
i=0; while [ $i -lt $n ]; do echo "EXECUTE q($args) \\g /dev/null"; i=$((i+1)); done
cat <<SQL
\! awk '{print "cpu_after", \$14+\$15}' /proc/\$PID/stat; date +"wall_after %s%N"
COMMIT;
SQL
} | psql -X -q -h 127.0.0.1 -U postgres -d "${FLEETMON_BENCH_DB:-fleetmon_metrics_bench}" | awk -v n=$n '
  /cpu_before/ {cb=$2} /cpu_after/ {ca=$2} /wall_before/ {wb=$2} /wall_after/ {wa=$2}
  END { printf "cpu %.1f ms/run, wall %.1f ms/run (n=%d)\n", (ca-cb)*10/n, (wa-wb)/1e6/n, n }'

#!/usr/bin/env bash
# Makes a PostgreSQL server answer on 127.0.0.1:5432 with a database `test` that
# user `postgres` reaches without a password, for the test suite. Idempotent:
# installs the server if missing, starts the cluster if stopped, and allows
# trust authentication from localhost if it was installed fresh.
set -euo pipefail

url_ok() { psql "postgres://postgres@127.0.0.1:5432/test" -qAtc 'SELECT 1' >/dev/null 2>&1; }

if ! command -v pg_ctlcluster >/dev/null 2>&1; then
  echo "start-postgres: installing PostgreSQL"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi

version=$(ls /etc/postgresql | sort -V | tail -n 1)
if ! pg_isready -q -h 127.0.0.1 -p 5432; then
  echo "start-postgres: starting cluster $version/main"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start
fi
for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
pg_isready -h 127.0.0.1 -p 5432

if ! url_ok; then
  hba="/etc/postgresql/$version/main/pg_hba.conf"
  if ! grep -q '^host all all 127.0.0.1/32 trust' "$hba"; then
    echo "start-postgres: allowing trust authentication from localhost in $hba"
    sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
    pg_ctlcluster --skip-systemctl-redirect "$version" main reload
    sleep 1
  fi
  psql "postgres://postgres@127.0.0.1:5432/postgres" -qAtc \
    "SELECT 1 FROM pg_database WHERE datname = 'test'" | grep -q 1 ||
    psql "postgres://postgres@127.0.0.1:5432/postgres" -qc 'CREATE DATABASE test'
fi
url_ok
echo "start-postgres: postgres://postgres@127.0.0.1:5432/test is ready"

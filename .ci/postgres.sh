#!/usr/bin/env bash
# Sourced by .ci/run: Debian's PostgreSQL for the knowledge-base tests (tests/test_knowledge_base.py runs
# every test on SQLite and, when AUTARKY_TEST_POSTGRES_URL is set, on PostgreSQL too).
# If PostgreSQL cannot be installed or started, say so loudly and go on: the SQLite half still runs.
start_postgres() {
  if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null) || return 1
  fi
  local version
  version=$(ls /usr/lib/postgresql | sort -n | tail -1)
  pg_ctlcluster "$version" main start 2>/dev/null || pg_ctlcluster "$version" main status >/dev/null || return 1
  su postgres -c "psql -qc \"CREATE USER autarky PASSWORD 'autarky' CREATEDB\"" >/dev/null 2>&1 || true
  su postgres -c "createdb -O autarky autarky_test" >/dev/null 2>&1 || true
  # Tests drop their own databases WITH (FORCE), which must end every session on them, whoever opened it.
  su postgres -c "psql -qc \"GRANT pg_signal_backend TO autarky\"" >/dev/null 2>&1 || true
  export AUTARKY_TEST_POSTGRES_URL=postgresql+psycopg://autarky:autarky@127.0.0.1/autarky_test
}
if [ "$(id -u)" = 0 ] && start_postgres; then
  echo "PostgreSQL up: the knowledge-base tests run on SQLite and PostgreSQL"
else
  echo "WARNING: no PostgreSQL here; the knowledge-base tests run on SQLite only" >&2
fi

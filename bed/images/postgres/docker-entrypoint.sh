#!/usr/bin/env bash
# Entrypoint of the bed's stand-in for the official postgres:15 image.
#
# It honours the same contract as the official image (written from its
# documentation, not from its code):
#
#   docker run IMAGE                    -> initialise PGDATA if empty, run postgres
#   docker run IMAGE -c name=value ...  -> same, with server options
#   docker run IMAGE pg_dump ...        -> run that command as is
#
# Environment, read only when PGDATA holds no cluster yet:
#   POSTGRES_PASSWORD[_FILE]   superuser password (required unless trust)
#   POSTGRES_USER[_FILE]       superuser name, default "postgres"
#   POSTGRES_DB[_FILE]         database to create, default $POSTGRES_USER
#   POSTGRES_INITDB_ARGS       extra initdb arguments (shell quoting allowed)
#   POSTGRES_INITDB_WALDIR     separate WAL directory
#   POSTGRES_HOST_AUTH_METHOD  pg_hba method for remote hosts, default scram-sha-256
# then the files in /docker-entrypoint-initdb.d run, in C sort order, against
# a server that listens on the unix socket only.
set -Eeo pipefail

INITDB_DIR=/docker-entrypoint-initdb.d
export PGDATA="${PGDATA:-/var/lib/postgresql/data}"

say() {
	printf '%s [entrypoint] %s\n' "$(date -u '+%Y-%m-%d %H:%M:%S UTC')" "$*"
}

fail() {
	say "error: $*" >&2
	exit 1
}

# load_secret NAME [DEFAULT]
# NAME comes from $NAME, else from the file named by $NAME_FILE (Docker and
# Kubernetes secrets), else DEFAULT.  The result is exported, NAME_FILE dropped.
load_secret() {
	local name="$1" default="${2-}"
	local file_var="${name}_FILE"
	local value="${!name-}" file="${!file_var-}"
	if [[ -n "$value" && -n "$file" ]]; then
		fail "both $name and $file_var are set; set only one of them"
	fi
	if [[ -n "$file" ]]; then
		[[ -f "$file" && -r "$file" ]] || fail "$file_var=$file is not a readable file"
		value="$(<"$file")"
	elif [[ -z "$value" ]]; then
		value="$default"
	fi
	export "$name=$value"
	unset "$file_var"
}

# True when postgres is only asked to print something and exit.
only_prints_info() {
	local arg
	for arg in "$@"; do
		case "$arg" in
			'-?' | --help | --describe-config | -V | --version) return 0 ;;
		esac
	done
	return 1
}

# Quote one word for /bin/sh (pg_ctl hands its -o string to sh -c).
sh_quote() {
	local squote="'"
	printf "'%s'" "${1//$squote/$squote\\$squote$squote}"
}

# As root: give the data directories to postgres, then run again as postgres.
become_postgres() {
	mkdir -p "$PGDATA"
	find "$PGDATA" \! -user postgres -exec chown postgres:postgres '{}' +
	case "$(stat -c %a "$PGDATA")" in
		700 | 750) ;;
		*) chmod 0700 "$PGDATA" ;;
	esac
	mkdir -p /var/run/postgresql
	chown postgres:postgres /var/run/postgresql
	chmod 3777 /var/run/postgresql
	if [[ -n "${POSTGRES_INITDB_WALDIR-}" ]]; then
		mkdir -p "$POSTGRES_INITDB_WALDIR"
		find "$POSTGRES_INITDB_WALDIR" \! -user postgres -exec chown postgres:postgres '{}' +
		chmod 0700 "$POSTGRES_INITDB_WALDIR"
	fi
	HOME=/var/lib/postgresql exec setpriv --reuid=postgres --regid=postgres --init-groups -- "$0" "$@"
}

# sql_in [psql args...]: run SQL (stdin, -f FILE or -c) as the superuser over
# the unix socket, in $POSTGRES_DB unless a later --dbname says otherwise.
sql_in() {
	PGHOST='' PGHOSTADDR='' psql \
		--no-psqlrc --no-password --set ON_ERROR_STOP=1 \
		--port "$init_port" --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" "$@"
}

# Names that initdb.d scripts written for the official image may use when
# they are sourced: docker_process_sql [psql args] and "${psql[@]}".
docker_process_sql() {
	sql_in "$@"
}
psql=(docker_process_sql)

check_password_given() {
	if [[ -n "$POSTGRES_PASSWORD" ]]; then
		return 0
	fi
	if [[ "$POSTGRES_HOST_AUTH_METHOD" == trust ]]; then
		say "warning: POSTGRES_HOST_AUTH_METHOD=trust and no POSTGRES_PASSWORD:" \
			"anyone who can reach port ${init_port} may connect as any role, without a password"
		return 0
	fi
	cat >&2 <<-EOF
		error: POSTGRES_PASSWORD is not set (or empty).
		  The database in $PGDATA is uninitialised and needs a superuser password.
		  Set POSTGRES_PASSWORD (or POSTGRES_PASSWORD_FILE, a file holding it),
		  or set POSTGRES_HOST_AUTH_METHOD=trust to accept every connection
		  without a password (not recommended).
	EOF
	exit 1
}

create_cluster() {
	local -a args=(
		--username="$POSTGRES_USER"
		--auth-local=trust
		--auth-host=trust
	)
	local -a extra=()
	if [[ -n "$POSTGRES_INITDB_ARGS" ]]; then
		eval "extra=($POSTGRES_INITDB_ARGS)"
	fi
	if [[ -n "${POSTGRES_INITDB_WALDIR-}" ]]; then
		args+=(--waldir="$POSTGRES_INITDB_WALDIR")
	fi
	say "creating a cluster in $PGDATA for superuser $POSTGRES_USER"
	if [[ -n "$POSTGRES_PASSWORD" ]]; then
		printf '%s\n' "$POSTGRES_PASSWORD" | initdb "${args[@]}" --pwfile=/dev/stdin "${extra[@]}"
	else
		initdb "${args[@]}" "${extra[@]}"
	fi
	# initdb's own rules (trust on the socket and on loopback) stay first; every
	# other host, i.e. everything outside the container, uses the chosen method.
	{
		printf '\n# Added by docker-entrypoint.sh: connections from outside the container.\n'
		printf 'host all all all %s\n' "$POSTGRES_HOST_AUTH_METHOD"
	} >>"$PGDATA/pg_hba.conf"
}

# start_init_server postgres [server args...]: the user's server options apply,
# but it listens on the unix socket only, so nobody sees a half-made database.
start_init_server() {
	local opts='' arg
	for arg in "${@:2}"; do
		opts+="$(sh_quote "$arg") "
	done
	opts+="-c listen_addresses='' -p $init_port"
	pg_ctl --pgdata="$PGDATA" --options="$opts" --wait --silent start
}

stop_init_server() {
	pg_ctl --pgdata="$PGDATA" --mode=fast --wait --silent stop
}

create_database() {
	if [[ "$POSTGRES_DB" == postgres ]]; then
		return 0
	fi
	say "creating database $POSTGRES_DB"
	sql_in --dbname postgres --set db="$POSTGRES_DB" <<-'EOSQL'
		SELECT format('CREATE DATABASE %I', :'db')
		WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db')
		\gexec
	EOSQL
}

run_init_files() {
	local -a _init_files=()
	local _init_file
	shopt -s nullglob
	_init_files=("$INITDB_DIR"/*)
	shopt -u nullglob
	if ((${#_init_files[@]} == 0)); then
		return 0
	fi
	mapfile -d '' -t _init_files < <(printf '%s\0' "${_init_files[@]}" | LC_ALL=C sort -z)
	for _init_file in "${_init_files[@]}"; do
		case "$_init_file" in
			*.sh)
				if [[ -x "$_init_file" ]]; then
					say "running $_init_file"
					"$_init_file"
				else
					say "sourcing $_init_file"
					# shellcheck disable=SC1090
					. "$_init_file"
				fi
				;;
			*.sql)
				say "running $_init_file"
				sql_in --file="$_init_file"
				;;
			*.sql.gz)
				say "running $_init_file"
				gzip -dc -- "$_init_file" | sql_in
				;;
			*.sql.xz)
				say "running $_init_file"
				xz -dc -- "$_init_file" | sql_in
				;;
			*.sql.zst)
				say "running $_init_file"
				zstd -dcq -- "$_init_file" | sql_in
				;;
			*)
				say "ignoring $_init_file (not .sh, .sql, .sql.gz, .sql.xz or .sql.zst)"
				;;
		esac
	done
}

initialise() {
	check_password_given
	if ! id -un >/dev/null 2>&1; then
		fail "uid $(id -u) has no entry in /etc/passwd, which initdb needs;" \
			"run the container as root, as postgres or as 999:999"
	fi
	create_cluster
	# Sockets in the initdb.d scripts may need a password if POSTGRES_INITDB_ARGS
	# changed the local auth method.
	export PGPASSWORD="${PGPASSWORD:-$POSTGRES_PASSWORD}"
	start_init_server "$@"
	create_database
	run_init_files
	stop_init_server
	unset PGPASSWORD
	say "initialisation complete; starting the server"
}

main() {
	if [[ "${1-}" == -* ]]; then
		set -- postgres "$@"
	fi
	if [[ "${1-}" != postgres ]] || only_prints_info "$@"; then
		exec "$@"
	fi
	if [[ "$(id -u)" == 0 ]]; then
		become_postgres "$@"
	fi

	load_secret POSTGRES_PASSWORD
	load_secret POSTGRES_USER postgres
	load_secret POSTGRES_DB "$POSTGRES_USER"
	export POSTGRES_INITDB_ARGS="${POSTGRES_INITDB_ARGS-}"
	export POSTGRES_HOST_AUTH_METHOD="${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}"
	init_port="${PGPORT:-5432}"

	mkdir -p "$PGDATA" 2>/dev/null || :
	if [[ -s "$PGDATA/PG_VERSION" ]]; then
		say "$PGDATA already holds a PostgreSQL $(<"$PGDATA/PG_VERSION") cluster; skipping initialisation"
	else
		initialise "$@"
	fi
	exec "$@"
}

main "$@"

#!/bin/bash
# Entrypoint of the mongo stand-in image (MongoDB 6.0, no mongosh).
#
# Honours the contract of the official image's entrypoint:
#   - a first argument starting with "-" is taken as options to mongod;
#   - any command other than mongod is exec'd unchanged;
#   - mongod is started as user mongodb (uid/gid 999) after the data
#     directories have been handed to that user, listening on all interfaces;
#   - MONGO_INITDB_ROOT_USERNAME / MONGO_INITDB_ROOT_PASSWORD (or their _FILE
#     variants): on the first start with an empty data directory, a temporary
#     mongod reachable only through a unix socket and 127.0.0.1 gets the root
#     user and runs /docker-entrypoint-initdb.d/*.sh; the real mongod then
#     runs with --auth.  Only one of the two set is an error.
#   - *.js init scripts need mongosh, which this image does not have: they are
#     refused with an explicit error instead of being skipped.
set -Eeuo pipefail

readonly HELPER=/usr/local/lib/mongo-standin/initdb-helper.py
readonly INITDB_DIR=/docker-entrypoint-initdb.d
readonly INIT_TIMEOUT=${MONGO_STANDIN_INIT_TIMEOUT:-120}

log() {
	printf '%s docker-entrypoint.sh: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" >&2
}

die() {
	log "error: $*"
	exit 1
}

# file_env VAR: take VAR from the environment or from the file named by VAR_FILE.
file_env() {
	local var=$1
	local file_var="${1}_FILE"
	local value="${!var:-}"
	local file="${!file_var:-}"
	if [ -n "$value" ] && [ -n "$file" ]; then
		die "both $var and $file_var are set; set only one of them"
	fi
	if [ -n "$file" ]; then
		[ -r "$file" ] || die "$file_var points to '$file', which is not a readable file"
		value="$(<"$file")"
	fi
	unset "$file_var"
	if [ -n "$value" ]; then
		export "$var=$value"
	else
		unset "$var"
	fi
}

# has_arg NAME ARGS...: is --NAME (or --NAME=...) among ARGS?
has_arg() {
	local name=$1 arg
	shift
	for arg; do
		case "$arg" in
			"$name" | "$name"=*) return 0 ;;
		esac
	done
	return 1
}

# arg_value NAME ARGS...: print the value of the last --NAME VALUE / --NAME=VALUE.
arg_value() {
	local name=$1 found='' value=''
	shift
	while [ $# -gt 0 ]; do
		case "$1" in
			"$name"=*) value="${1#*=}"; found=1 ;;
			"$name")
				if [ $# -gt 1 ]; then
					value=$2; found=1
					shift
				fi
				;;
		esac
		shift
	done
	[ -n "$found" ] && printf '%s\n' "$value"
}

# temp_mongod_args ARGS...: fill the array TEMP_ARGS with ARGS minus everything
# that would expose the temporary mongod, turn on auth/replication, or fork it.
temp_mongod_args() {
	local with_value=' --bind_ip --port --replSet --unixSocketPrefix --logpath --pidfilepath --keyFile --clusterAuthMode --tlsMode --sslMode --dbpath --config -f '
	local flags=' --bind_ip_all --auth --fork --syslog --nounixsocket --shardsvr --configsvr '
	local arg name
	TEMP_ARGS=()
	while [ $# -gt 0 ]; do
		arg=$1
		shift
		name=${arg%%=*}
		if [[ $with_value == *" $name "* ]]; then
			# --opt VALUE form: drop the value as well.
			if [ "$name" = "$arg" ] && [ $# -gt 0 ]; then
				shift
			fi
			continue
		fi
		if [[ $flags == *" $arg "* ]]; then
			continue
		fi
		TEMP_ARGS+=("$arg")
	done
}

db_path() {
	local path
	if path=$(arg_value --dbpath "$@"); then
		printf '%s\n' "$path"
	elif has_arg --configsvr "$@"; then
		printf '%s\n' /data/configdb
	else
		printf '%s\n' /data/db
	fi
}

is_initialized() {
	[ -e "$1/WiredTiger" ] || [ -e "$1/storage.bson" ]
}

init_scripts() {
	local f
	shopt -s nullglob
	for f in "$INITDB_DIR"/*; do
		[ -f "$f" ] && printf '%s\n' "$f"
	done
	shopt -u nullglob
}

run_initdb() {
	local dbpath=$1 want_root=$2
	shift 2
	local scripts=() f

	mapfile -t scripts < <(init_scripts)
	for f in "${scripts[@]}"; do
		case "$f" in
			*.js)
				die "$f: .js init scripts are NOT supported by this mongo stand-in image" \
					"(they need mongosh, which it does not ship); rewrite it as a .sh script" \
					"(python3 with pymongo is available) or remove it"
				;;
		esac
	done

	local sockdir
	sockdir=$(mktemp -d /tmp/mongo-initdb.XXXXXX)
	local socket="$sockdir/mongodb-27017.sock"

	temp_mongod_args "${@:2}"
	local arg
	for arg in "${@:2}"; do
		case "$arg" in
			--tls* | --ssl*)
				TEMP_ARGS+=(--tlsMode disabled)
				break
				;;
		esac
	done
	log "initialising $dbpath: starting a temporary mongod on 127.0.0.1 and $socket"
	"$1" "${TEMP_ARGS[@]}" --dbpath "$dbpath" --bind_ip 127.0.0.1 --port 27017 \
		--unixSocketPrefix "$sockdir" &
	local pid=$!
	# shellcheck disable=SC2064 # expand pid now
	trap "kill -TERM $pid 2>/dev/null || true" EXIT

	python3 "$HELPER" wait "$socket" "$pid" "$INIT_TIMEOUT" \
		|| die "the temporary mongod did not come up; see its log above"

	if [ "$want_root" = 1 ]; then
		python3 "$HELPER" create-root "$socket" || die "could not create the root user"
	fi

	export MONGO_INITDB_DATABASE="${MONGO_INITDB_DATABASE:-test}"
	for f in "${scripts[@]}"; do
		case "$f" in
			*.sh)
				if [ -x "$f" ]; then
					log "running $f"
					"$f" || die "$f failed (exit status $?)"
				else
					log "sourcing $f"
					# shellcheck disable=SC1090
					. "$f"
				fi
				;;
			*) log "ignoring $f (only *.sh is run)" ;;
		esac
	done

	log "stopping the temporary mongod"
	trap - EXIT
	kill -TERM "$pid"
	wait "$pid" || die "the temporary mongod did not shut down cleanly"
	rm -rf "$sockdir"
	log "initialisation of $dbpath complete"
}

first=${1:-}
if [ -z "$first" ] || [ "${first:0:1}" = '-' ]; then
	set -- mongod "$@"
fi

if [ "$1" != mongod ] && [ "$1" != /usr/local/bin/mongod ]; then
	exec "$@"
fi

# Informational runs need no data directory, user or initialisation.
for info in --help -h --version --sysinfo; do
	if has_arg "$info" "${@:2}"; then
		exec "$@"
	fi
done

dbpath=$(db_path "${@:2}")

if [ "$(id -u)" = 0 ]; then
	for dir in /data/db /data/configdb "$dbpath"; do
		if [ -d "$dir" ]; then
			find "$dir" \! -user mongodb -exec chown -h mongodb:mongodb '{}' +
		fi
	done
	exec setpriv --reuid=mongodb --regid=mongodb --init-groups "${BASH_SOURCE[0]}" "$@"
fi

file_env MONGO_INITDB_ROOT_USERNAME
file_env MONGO_INITDB_ROOT_PASSWORD

want_root=0
if [ -n "${MONGO_INITDB_ROOT_USERNAME:-}" ] && [ -n "${MONGO_INITDB_ROOT_PASSWORD:-}" ]; then
	want_root=1
elif [ -n "${MONGO_INITDB_ROOT_USERNAME:-}" ] || [ -n "${MONGO_INITDB_ROOT_PASSWORD:-}" ]; then
	die "MONGO_INITDB_ROOT_USERNAME and MONGO_INITDB_ROOT_PASSWORD (or their _FILE variants)" \
		"must be set together: only $([ -n "${MONGO_INITDB_ROOT_USERNAME:-}" ] && echo USERNAME || echo PASSWORD) is set"
fi

if is_initialized "$dbpath"; then
	log "$dbpath already holds data: skipping initialisation"
elif [ "$want_root" = 1 ] || [ -n "$(init_scripts)" ]; then
	run_initdb "$dbpath" "$want_root" "$@"
fi

if ! has_arg --bind_ip "${@:2}" && ! has_arg --bind_ip_all "${@:2}"; then
	set -- "$@" --bind_ip_all
fi
if [ "$want_root" = 1 ] && ! has_arg --auth "${@:2}"; then
	set -- "$@" --auth
fi

unset "${!MONGO_INITDB_@}"
exec "$@"

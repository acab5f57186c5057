#!/usr/bin/env bash
# Entrypoint of the bed's stand-in for the official redis:7 image.
#
# It honours the same contract as the official image (written from its
# documentation, not from its code):
#
#   docker run IMAGE                          -> redis-server, data in /data
#   docker run IMAGE --appendonly yes         -> redis-server --appendonly yes
#   docker run IMAGE /path/redis.conf [opts]  -> redis-server /path/redis.conf [opts]
#   docker run IMAGE redis-cli ...            -> run that command as is
#
# redis-server runs as the redis user (uid 999) and, unless the command line
# or the configuration file sets protected-mode itself, with protected mode
# off: the container's network is the boundary, and protected mode would
# refuse every client that is not on the container's own loopback.
set -Eeo pipefail

DATA_DIR=/data

# True when redis-server is only asked to print something and exit.
only_prints_info() {
	local arg
	for arg in "$@"; do
		case "$arg" in
			-v | --version | -h | --help | --test-memory | --check-system) return 0 ;;
		esac
	done
	return 1
}

# config_sets_protected_mode FILE [DEPTH]: FILE, or a file it includes, has a
# protected-mode directive.
config_sets_protected_mode() {
	local file="$1" depth="${2:-0}" keyword rest target
	local -a targets
	if ((depth > 8)) || [[ ! -r "$file" ]]; then
		return 1
	fi
	while read -r keyword rest; do
		case "${keyword,,}" in
			protected-mode) return 0 ;;
			include)
				rest="${rest%\"}"
				rest="${rest#\"}"
				if [[ "$rest" == *[*?[]* ]]; then
					# Redis expands glob patterns in include paths.
					# shellcheck disable=SC2206
					targets=($rest)
				else
					targets=("$rest")
				fi
				for target in "${targets[@]}"; do
					if config_sets_protected_mode "$target" $((depth + 1)); then
						return 0
					fi
				done
				;;
		esac
	done <"$file"
	return 1
}

# user_sets_protected_mode redis-server [CONFIG] [--option value...]
user_sets_protected_mode() {
	local arg
	for arg in "${@:2}"; do
		if [[ "${arg,,}" == --protected-mode ]]; then
			return 0
		fi
	done
	if [[ -n "${2-}" && "$2" != -* ]] && config_sets_protected_mode "$2"; then
		return 0
	fi
	return 1
}

main() {
	if [[ "${1-}" == -* || "${1-}" == *.conf ]]; then
		set -- redis-server "$@"
	fi
	if [[ "${1-}" != redis-server ]] || only_prints_info "$@"; then
		exec "$@"
	fi
	if [[ "$(id -u)" == 0 ]]; then
		mkdir -p "$DATA_DIR"
		find "$DATA_DIR" \! -user redis -exec chown redis:redis '{}' +
		HOME=/var/lib/redis exec setpriv --reuid=redis --regid=redis --init-groups -- "$0" "$@"
	fi
	if ! user_sets_protected_mode "$@"; then
		set -- "$@" --protected-mode no
	fi
	# Dumps and append-only files are readable by redis only, unless the
	# caller asked for a specific umask.
	if [[ "$(umask)" == 0022 ]]; then
		umask 0077
	fi
	exec "$@"
}

main "$@"

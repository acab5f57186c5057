#!/bin/sh
# Runs the executable hooks in /docker-entrypoint.d when the command is nginx,
# then replaces itself with the command, as the official image does.
set -e

case "$1" in
    nginx|nginx-debug)
        if [ -z "${NGINX_ENTRYPOINT_QUIET_LOGS:-}" ]; then
            quiet=false
        else
            quiet=true
        fi
        for hook in $(find /docker-entrypoint.d -mindepth 1 -maxdepth 1 -type f | sort); do
            case "$hook" in
                *.sh)
                    if [ -x "$hook" ]; then
                        $quiet || echo "$0: running $hook"
                        "$hook"
                    else
                        $quiet || echo "$0: ignoring $hook, not executable"
                    fi
                    ;;
                *.envsh)
                    if [ -x "$hook" ]; then
                        # shellcheck disable=SC1090
                        . "$hook"
                    fi
                    ;;
                *) $quiet || echo "$0: ignoring $hook" ;;
            esac
        done
        ;;
esac

exec "$@"

#!/bin/sh
# Renders /etc/nginx/templates/*.template into /etc/nginx/conf.d with envsubst,
# substituting only variables defined in the environment.
set -e

template_dir="${NGINX_ENVSUBST_TEMPLATE_DIR:-/etc/nginx/templates}"
suffix="${NGINX_ENVSUBST_TEMPLATE_SUFFIX:-.template}"
output_dir="${NGINX_ENVSUBST_OUTPUT_DIR:-/etc/nginx/conf.d}"

[ -d "$template_dir" ] || exit 0
[ -w "$output_dir" ] || { echo "$0: $output_dir is not writable" >&2; exit 0; }

defined="$(env | cut -d= -f1 | sed 's/^/$/' | tr '\n' ' ')"
find "$template_dir" -follow -type f -name "*$suffix" | while read -r template; do
    relative="${template#"$template_dir/"}"
    output="$output_dir/${relative%"$suffix"}"
    mkdir -p "$(dirname "$output")"
    envsubst "$defined" < "$template" > "$output"
done

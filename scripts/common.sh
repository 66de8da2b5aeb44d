# Sourced by the setup scripts: run a step with its output held back, shown only if it fails.
# shellcheck shell=bash

# quietly WHO COMMAND...: run COMMAND (a program or a function) with its output kept aside; if it
# fails, print the last lines of that output, each marked with WHO, and return its status.
quietly() {
    local who=$1 output status=0
    shift
    output=$(mktemp)
    "$@" >"$output" 2>&1 || status=$?
    if [ "$status" != 0 ]; then
        echo "$who: '$*' failed (exit status $status); the last lines it printed:" >&2
        tail -n 20 "$output" | sed "s/^/$who:   /" >&2
    fi
    rm -f "$output"
    return "$status"
}

# apt_install PACKAGE...: install Debian packages without questions, refreshing the package
# lists first only if a plain install fails (they may be stale or missing in a container).
apt_install() {
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends "$@" \
        || { apt-get update -qq && apt-get install -y -qq --no-install-recommends "$@"; }
}

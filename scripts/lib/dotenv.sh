# Reading and writing KEY=VALUE lines of the git-ignored .env that `docker compose` reads
# (sourced by scripts/secrets and scripts/up). A value set in the shell wins over .env, as in compose.
# DOTENV: the file (default .env in the repository root).

DOTENV=${DOTENV:-.env}

# dotenv_get KEY: the value from the environment, else from $DOTENV (last line wins), else empty.
dotenv_get() {
    local key=$1
    if [ -n "${!key:-}" ]; then
        printf '%s\n' "${!key}"
        return
    fi
    [ -f "$DOTENV" ] || return 0
    sed -n "s/^[[:space:]]*$key[[:space:]]*=[[:space:]]*//p" "$DOTENV" | tail -n 1 | sed -e 's/^"\(.*\)"$/\1/' -e "s/^'\(.*\)'$/\1/"
}

# dotenv_default KEY VALUE [COMMENT]: append KEY=VALUE to $DOTENV unless KEY is set there or in the
# environment (a lab's own setting is never overwritten).
dotenv_default() {
    local key=$1 value=$2 comment=${3:-}
    [ -n "$(dotenv_get "$key")" ] && return 0
    if [ ! -f "$DOTENV" ]; then
        printf '# Settings for docker compose (docs/stack.md). Git-ignored: written by scripts/secrets and\n# scripts/up, edited by hand as a lab likes; a lab'"'"'s own values are never overwritten.\n' > "$DOTENV"
    fi
    [ -n "$comment" ] && printf '# %s\n' "$comment" >> "$DOTENV"
    printf '%s=%s\n' "$key" "$value" >> "$DOTENV"
}

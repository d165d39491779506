# The project's venv (sourced by scripts/test and scripts/lint): created once, the project installed
# editable with its test extras, and lab-utils 0.5.4 (the reference peer for wire compatibility;
# its psycopg2 requirement is met by psycopg2-binary, so it is installed without its dependencies).
# VENV: the directory (LABUTILS_VENV, default .venv); PYTHON: the interpreter that creates it.

VENV=${LABUTILS_VENV:-.venv}
PYTHON=${PYTHON:-python3}

ensure_venv() {
    if [ ! -x "$VENV/bin/python" ]; then
        "$PYTHON" -m venv "$VENV"
    fi
    "$VENV/bin/python" -m pip install -q --upgrade pip
    "$VENV/bin/python" -m pip install -q -e '.[test]'
    "$VENV/bin/python" -m pip install -q --no-deps 'lab-utils==0.5.4'
}

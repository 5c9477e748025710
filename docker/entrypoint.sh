#!/bin/sh
# The image's entrypoint.  With one argument, a Procfile line (docker/compose.yaml passes each service its
# line unchanged): the shell runs it, as honcho does, so ${PORT:-8000} and the like expand from the
# container's environment, and its `exec` puts the process in this shell's place, where it receives the
# SIGTERM of `docker stop` itself.  With several arguments, a plain command, run as it is:
#   docker compose -f docker/compose.yaml run --rm web python manage.py createsuperuser
set -eu
case "$#" in
    0) echo "usage: a Procfile line as one argument, or a command (python manage.py ...)" >&2; exit 64 ;;
    1) exec /bin/sh -c "$1" ;;
    *) exec "$@" ;;
esac

""" Command-line tool for the instrument daemon: sends one command, prints the reply.

Examples::

    python cli.py status
    python cli.py device --on
    python cli.py logging --start --use-database
    python cli.py quit

Exit codes: 0 for a reply, 1 when the daemon replied with an error
(or with nothing), 2 when the daemon could not be reached.
"""

# Imports
import argparse
import configparser
import sys
from os.path import abspath, dirname, join

from lab_utils.custom_logging import configure_logging, getLogger

# Local packages
from lab_utils.socket_comm import Client

#: The CLI's logger name
APP_NAME = 'instrument-cli'


def main(argv=None):
    here = dirname(abspath(__file__))
    parser = argparse.ArgumentParser(description='Talk to the power meter daemon')
    parser.add_argument('--conf', default=join(here, 'conf'), help='configuration directory')
    parser.add_argument('command', nargs=argparse.REMAINDER, help='the daemon command and its options')
    args = parser.parse_args(argv)

    configure_logging(config_file=join(args.conf, 'logging-cli.ini'), logger_name=APP_NAME)
    logger = getLogger()

    try:
        client = Client(config_file=join(args.conf, 'server.ini'))
    except configparser.Error as e:
        logger.error('Configuration error: %s', e)
        return 2

    message = ' '.join(args.command) or 'help'
    try:
        reply = client.send_message(message)
    except OSError as e:
        logger.error('Could not reach the daemon: %s', e)
        return 2

    # One write: log lines from the logging thread cannot land inside the reply
    sys.stdout.write(reply.rstrip('\n') + '\n')
    sys.stdout.flush()
    if not reply or reply.startswith('Error!') or reply.startswith('Unknown exception!'):
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())

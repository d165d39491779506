""" Instrument daemon: a lab-utils 0.5.x style ``Server`` for the power meter.

Start it with the configuration directory (``conf/`` next to this file by
default)::

    python daemon.py --conf conf

and talk to it with ``cli.py`` (``python cli.py status``). Commands:
``status``, ``device --on|--off|--test``, ``logging --start|--stop
[--use-database]``, ``fault`` (forces an instrument fault, logged as an
ERROR so the alarm chain can be tested) and ``quit``.

Exit codes: 0 after ``quit`` or Ctrl+C, 1 when another instance holds the
PID file, 2 for a configuration error, 3 when the instrument cannot be
opened, 4 when the TCP port cannot be bound.
"""

# Imports
import argparse
import configparser
import sys
from os.path import abspath, dirname, join

from instrument import Instrument, InstrumentError
from lab_utils.custom_logging import configure_logging, getLogger
from lab_utils.database import Database

# Local packages
from lab_utils.socket_comm import Server
from monitor import Monitor
from psycopg2 import Error as DatabaseError

# Third party
from serial import SerialException
from zc.lockfile import LockError

#: The app name: logger name, and --app field of alarms
APP_NAME = 'instrument'


class Daemon(Server):
    """ The instrument daemon: the base :class:`Server` plus the
    power meter commands. """

    def __init__(self,
                 config_file: str = None,
                 pid_file_name: str = None,
                 host: str = None,
                 port: int = None,
                 device_config: str = None,
                 database_config: str = None):
        # Open the instrument first: a daemon without its instrument is of no use
        self.device_config = device_config
        self.database_config = database_config
        self.instrument = Instrument(device_config)
        self.instrument.open()
        self.monitor = None

        # Parse the server configuration and lock the PID file
        super().__init__(config_file=config_file, pid_file_name=pid_file_name, host=host, port=port)

        # Add the daemon commands to the base parser
        self.update_parser()

    def update_parser(self):
        """ Adds the instrument commands to the :attr:`parser`. """
        self.parser.description = 'Power meter daemon'

        sp_status = self.sp.add_parser(name='status', description='shows the daemon status')
        sp_status.set_defaults(func=self.status, which='status')

        sp_device = self.sp.add_parser(name='device', description='controls the power meter')
        group = sp_device.add_mutually_exclusive_group(required=True)
        group.add_argument('--on', action='store_true', help='turns the output on')
        group.add_argument('--off', action='store_true', help='turns the output off')
        group.add_argument('--test', action='store_true', help='identifies the device and runs its self-test')
        sp_device.set_defaults(func=self.device, which='device')

        sp_logging = self.sp.add_parser(name='logging', description='periodic readings')
        group = sp_logging.add_mutually_exclusive_group(required=True)
        group.add_argument('--start', action='store_true', help='starts the monitor')
        group.add_argument('--stop', action='store_true', help='stops the monitor')
        sp_logging.add_argument('--use-database', action='store_true', help='stores the readings in the database')
        sp_logging.set_defaults(func=self.logging, which='logging')

        sp_fault = self.sp.add_parser(name='fault', description='forces an instrument fault (alarm test)')
        sp_fault.set_defaults(func=self.fault, which='fault')

    def status(self):
        """ Replies with the device and monitor state. """
        try:
            output = 'on' if self.instrument.output() else 'off'
        except InstrumentError as e:
            self.logger.error('Instrument error: %s', e)
            output = 'unknown ({})'.format(e)
        if self.monitor is None:
            monitor = 'stopped'
        elif self.monitor.database is None:
            monitor = 'running'
        else:
            monitor = 'running, table <{}> of database <{}>'.format(self.monitor.table, self.monitor.database.database)
        self.reply = 'Device output: {}\nLogging: {}\n'.format(output, monitor)

    def device(self):
        """ Turns the output on or off, or tests the device. """
        try:
            if self.namespace.on:
                self.instrument.set_output(True)
                self.reply = 'Device output is on'
            elif self.namespace.off:
                self.instrument.set_output(False)
                self.reply = 'Device output is off'
            else:
                identity = self.instrument.identify()
                passed = self.instrument.self_test()
                self.reply = 'Device {}: self-test {}'.format(identity, 'passed' if passed else 'FAILED')
            self.logger.info(self.reply)
        except InstrumentError as e:
            self.logger.error('Instrument error: %s', e)
            self.reply = 'Error! Instrument error: {}'.format(e)

    def logging(self):
        """ Starts or stops the :class:`Monitor`. """
        if self.namespace.stop:
            if self.monitor is None:
                self.reply = 'Logging was not running'
                return
            self.stop_monitor()
            self.reply = 'Logging stopped'
            return

        if self.monitor is not None:
            self.reply = 'Logging is already running'
            return

        database = None
        try:
            if self.namespace.use_database:
                database = Database(config_file=self.database_config)
                database.connect()
            monitor = Monitor(self.instrument, self.device_config, database)
            if database is not None:
                monitor.prepare_table()
        except (configparser.Error, DatabaseError) as e:
            self.logger.error('Could not start logging: %s', e)
            self.reply = 'Error! Could not start logging: {}'.format(e)
            if database is not None:
                database.close()
            return

        self.monitor = monitor
        self.monitor.start()
        if database is None:
            self.reply = 'Logging started'
        else:
            self.reply = 'Logging started, table <{}> of database <{}>'.format(monitor.table, database.database)

    def fault(self):
        """ Makes the instrument report a fault, logged as an ERROR. """
        try:
            self.instrument.force_fault()
            self.reply = 'The instrument reported no fault'
        except InstrumentError as e:
            self.logger.error('Instrument fault: %s', e)
            self.reply = 'Error! Instrument fault: {}'.format(e)

    def stop_monitor(self):
        """ Stops the monitor thread and closes its database connection. """
        if self.monitor is not None:
            self.monitor.stop()
            if self.monitor.database is not None:
                self.monitor.database.close()
            self.monitor = None

    def quit(self):
        """ Stops logging and closes the instrument, then says goodbye. """
        self.stop_monitor()
        self.instrument.close()
        super().quit()


def main():
    here = dirname(abspath(__file__))
    parser = argparse.ArgumentParser(description='Power meter daemon')
    parser.add_argument('--conf', default=join(here, 'conf'), help='configuration directory')
    parser.add_argument('--pid-file', default=None, help='PID file (default: /tmp/socket_comm.pid)')
    args = parser.parse_args()

    configure_logging(config_file=join(args.conf, 'logging.ini'), logger_name=APP_NAME)
    logger = getLogger()

    try:
        daemon = Daemon(
            config_file=join(args.conf, 'server.ini'),
            pid_file_name=args.pid_file,
            device_config=join(args.conf, 'device.ini'),
            database_config=join(args.conf, 'database.ini'),
        )
    except LockError:
        logger.error('Another instance of the daemon is running, exiting')
        return 1
    except configparser.Error as e:
        logger.error('Configuration error: %s', e)
        return 2
    except SerialException as e:
        logger.error('Could not open the instrument: %s', e)
        return 3

    try:
        daemon.start_daemon()
    except OSError as e:
        logger.error('Daemon stopped: %s', e)
        return 4
    logger.info('Daemon stopped')
    return 0


if __name__ == '__main__':
    sys.exit(main())

""" The Monitor thread: reads the instrument periodically and stores the readings. """

# Imports
import configparser
import threading
from os.path import abspath, expanduser

from instrument import Instrument, InstrumentError

# Local packages
from lab_utils.custom_logging import getLogger
from lab_utils.database import Constraint, Database, DataType

# Third party
from psycopg2 import Error as DatabaseError

#: Columns of the readings table, with their types and constraints
COLUMNS = [
    ('power', DataType.double, [Constraint.positive]),
    ('temperature', DataType.double, None),
]


class Monitor(threading.Thread):
    """ Reads the :class:`Instrument` every :attr:`interval` seconds until
    :meth:`stop` is called. With a :class:`Database`, each reading
    becomes a row of :attr:`table`. """

    interval: float = 1.0           #: Seconds between readings
    table: str = 'power_meter'      #: Table the readings go to

    def __init__(self, instrument: Instrument, config_file: str = None, database: Database = None):
        super().__init__(name='Monitor', daemon=True)
        self.instrument = instrument
        self.database = database
        self.readings = 0
        self.stop_event = threading.Event()
        if config_file is not None:
            self.config(config_file)

    def config(self, config_file: str):
        """ Reads the [Monitor] section of the configuration file. """
        config_parser = configparser.ConfigParser()
        config_parser.read(abspath(expanduser(config_file)))
        self.interval = config_parser.getfloat(section='Monitor', option='interval', fallback=self.interval)
        self.table = config_parser.get(section='Monitor', option='table', fallback=self.table)

    def prepare_table(self):
        """ Creates the readings table and its columns if they do not exist yet. """
        if not self.database.check_table(self.table):
            self.database.create_timescale_db(self.table)
        for name, data_type, constraints in COLUMNS:
            self.database.new_column(self.table, name, data_type, constraints)

    def run(self):
        logger = getLogger()
        logger.info('Monitor started, reading every %s s', self.interval)
        while not self.stop_event.is_set():
            try:
                power, temperature = self.instrument.measure()
                self.readings += 1
                logger.debug('Reading %d: power %s W, temperature %s degC', self.readings, power, temperature)
                if self.database is not None:
                    self.database.new_entry(self.table, [name for name, _, __ in COLUMNS], [power, temperature])
            except InstrumentError as e:
                logger.error('Instrument error: %s', e)
            except DatabaseError as e:
                logger.error('Could not store the reading: %s', e)
            self.stop_event.wait(self.interval)
        logger.info('Monitor stopped after %d readings', self.readings)

    def stop(self):
        """ Stops the thread and waits for it to finish. """
        self.stop_event.set()
        self.join()

""" Driver of the power meter, over a serial line (pyserial). """

# Imports
import configparser
import threading
from os.path import abspath, expanduser

# Third party
import serial

# Local packages
from lab_utils.custom_logging import getLogger


class InstrumentError(Exception):
    """ The instrument answered with an error, or did not answer. """
    pass


class Instrument:
    """ A SCPI-like power meter on a serial port. One command
    at a time: the daemon and the monitor thread share it. """

    port: str = '/dev/ttyUSB0'      #: Serial device
    baudrate: int = 9600            #: Line speed
    timeout: float = 2.0            #: Seconds to wait for an answer

    def __init__(self, config_file: str = None):
        self.serial = None
        self.lock = threading.Lock()
        if config_file is not None:
            self.config(config_file)

    def config(self, config_file: str):
        """ Reads the [Device] section of the configuration file. """
        config_file = abspath(expanduser(config_file))
        getLogger().info('Loading device configuration file %s', config_file)
        config_parser = configparser.ConfigParser()
        if not config_parser.read(config_file):
            raise configparser.Error('Device configuration file {} could not be read'.format(config_file))
        self.port = config_parser.get(section='Device', option='port')
        self.baudrate = config_parser.getint(section='Device', option='baudrate', fallback=self.baudrate)
        self.timeout = config_parser.getfloat(section='Device', option='timeout', fallback=self.timeout)

    def open(self):
        """ Opens the serial port. """
        getLogger().info('Opening serial port %s at %d baud', self.port, self.baudrate)
        self.serial = serial.Serial(port=self.port, baudrate=self.baudrate, timeout=self.timeout)

    def close(self):
        """ Closes the serial port, if open. """
        with self.lock:
            if self.serial is not None:
                getLogger().info('Closing serial port %s', self.port)
                self.serial.close()
                self.serial = None

    def query(self, command: str) -> str:
        """ Sends one command line and returns the answer line. """
        with self.lock:
            if self.serial is None:
                raise InstrumentError('serial port {} is not open'.format(self.port))
            self.serial.write((command + '\n').encode())
            answer = self.serial.readline().decode(errors='replace')
        if not answer.endswith('\n'):
            raise InstrumentError('no answer to {} within {} s'.format(command, self.timeout))
        answer = answer.strip()
        if answer.startswith('ERR'):
            raise InstrumentError('{} failed: {}'.format(command, answer))
        return answer

    def identify(self) -> str:
        return self.query('*IDN?')

    def self_test(self) -> bool:
        return self.query('*TST?') == '0'

    def set_output(self, on: bool):
        self.query('OUTP ON' if on else 'OUTP OFF')

    def output(self) -> bool:
        return self.query('OUTP?') == '1'

    def measure(self) -> tuple:
        """ One reading: (power in W, temperature in degC). """
        power, temperature = self.query('MEAS?').split(',')
        return float(power), float(temperature)

    def force_fault(self):
        """ Makes the instrument report an error (for alarm tests). """
        self.query('SYST:FAULT')

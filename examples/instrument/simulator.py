""" A simulated serial power meter on a pseudo-terminal.

Run it, read the device path from its first line of output, and point
``[Device] port`` of ``device.ini`` at it (or use ``--link``)::

    python simulator.py --link /tmp/instrument-tty

The instrument speaks a small SCPI-like dialect, one command per line
('\\n'), one answer line per command:

    *IDN?      -> LABSIM,PM-100,0001,1.0
    *TST?      -> 0 (self-test passed)
    OUTP ON    -> OK      (OUTP OFF likewise)
    OUTP?      -> 1 or 0
    MEAS?      -> <power W>,<temperature degC>
    SYST:FAULT -> ERR -300,"Device-specific error: forced fault"

Readings follow a fixed sequence (the n-th MEAS? always answers the same),
so two runs of the same session produce the same data. The simulator runs
until it is terminated (SIGTERM or Ctrl+C).
"""

# Imports
import argparse
import os
import select
import signal
import sys
import tty

IDENTITY = 'LABSIM,PM-100,0001,1.0'


class PowerMeter:
    """ The simulated instrument: its state and its answers. """

    def __init__(self):
        self.output = False
        self.readings = 0

    def answer(self, command: str) -> str:
        """ The answer line (without terminator) to one command line. """
        command = command.strip().upper()
        if command == '*IDN?':
            return IDENTITY
        if command == '*TST?':
            return '0'
        if command in ('OUTP ON', 'OUTP 1'):
            self.output = True
            return 'OK'
        if command in ('OUTP OFF', 'OUTP 0'):
            self.output = False
            return 'OK'
        if command == 'OUTP?':
            return '1' if self.output else '0'
        if command == 'MEAS?':
            n = self.readings
            self.readings += 1
            power = 1.0e-3 * (1 + (n % 10) / 10) if self.output else 0.0
            temperature = 21.0 + (n % 5) / 10
            return '{:.4e},{:.2f}'.format(power, temperature)
        if command == 'SYST:FAULT':
            return 'ERR -300,"Device-specific error: forced fault"'
        return 'ERR -113,"Undefined header: {}"'.format(command)


def serve(master: int, meter: PowerMeter):
    """ Answers command lines arriving on the pty master until the process is terminated. """
    pending = b''
    while True:
        select.select([master], [], [])
        try:
            pending += os.read(master, 1024)
        except OSError:
            # EIO: no process has the device open right now; wait for the next one
            select.select([], [], [], 0.05)
            continue
        while b'\n' in pending:
            line, pending = pending.split(b'\n', 1)
            answer = meter.answer(line.decode(errors='replace')) + '\n'
            os.write(master, answer.encode())


def main():
    parser = argparse.ArgumentParser(description='Simulated serial power meter on a pty')
    parser.add_argument('--link', help='also make this path a symbolic link to the device')
    args = parser.parse_args()

    master, slave = os.openpty()
    # Raw mode: no echo, no line editing, bytes pass as they are (like a real serial line)
    tty.setraw(slave)
    path = os.ttyname(slave)
    if args.link:
        if os.path.lexists(args.link):
            os.remove(args.link)
        os.symlink(path, args.link)

    # Terminate quietly on SIGTERM, as on Ctrl+C
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(path, flush=True)
    try:
        # The slave end stays open here, so the master never sees a hang-up between clients
        serve(master, PowerMeter())
    except KeyboardInterrupt:
        pass


if __name__ == '__main__':
    main()

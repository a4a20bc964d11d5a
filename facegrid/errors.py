"""The exception family and the exit codes every script uses.

Messages name the value that was wrong and the fix, in one line.
"""

EXIT_OK = 0  # success (search: at least one match)
EXIT_NO_RESULT = 1  # nothing found (search), or a runtime error
EXIT_USAGE = 2  # bad flag, bad settings.ini, bad input folder
EXIT_QUEUE = 3  # beanstalkd unreachable


class FacegridError(Exception):
    """Base class: anything facegrid raises on purpose."""

    exit_code = EXIT_NO_RESULT


class ConfigError(FacegridError):
    """settings.ini or a flag holds a value that cannot be used."""

    exit_code = EXIT_USAGE


class UsageError(FacegridError):
    """The command line names something that cannot be used (a missing folder...)."""

    exit_code = EXIT_USAGE


class QueueUnavailable(FacegridError):
    """beanstalkd cannot be reached or refuses the connection."""

    exit_code = EXIT_QUEUE


class NotBeanstalkd(QueueUnavailable):
    """Something answers at the address, but not in beanstalkd's protocol (a web server...)."""


class BadJob(FacegridError):
    """A job body that is not a valid facegrid envelope. The job gets buried."""


class ImageUnreadable(FacegridError):
    """The bytes of a photo cannot be decoded safely into pixels."""


class StoreError(FacegridError):
    """The SQLite database cannot be opened or has an unknown schema."""


class DatabaseUnwritable(StoreError):
    """The collector's database (or its folder) cannot be written by this user: a setting to fix."""

    exit_code = EXIT_USAGE


class DatabaseInUse(StoreError):
    """Another collector holds the database's writer lock."""

    exit_code = EXIT_USAGE

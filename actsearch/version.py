"""The version of actsearch, in one place: the package, the records and the results read it."""

__version__ = "0.1.0"

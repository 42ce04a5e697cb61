"""The commands: ``search`` (and ``export``), ``retrain`` (variants, results, markdown),
``reproduce`` (the headline table), ``bench``, and the workdir record they share
(``workdir``). Each is a thin shell: it reads what the user gave, calls the engine and a
strategy, and writes the files a user reads.

They live in a folder of their own so that the package's top level keeps room for the public
facade (``actsearch.search(...)``, ``actsearch.retrain(...)``): no module there carries a
facade function's name.
"""

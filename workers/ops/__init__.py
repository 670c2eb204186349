"""What the ``workers`` command does, apart from parsing arguments and printing.

Each function takes an ``Ops`` (settings plus short-lived clients) and returns plain data,
so the command and the tests read the same results.
"""

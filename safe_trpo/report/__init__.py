"""The self-contained HTML run report (``safe-trpo report RUN``).

``build`` assembles the page and binds it into the record, ``facts`` holds what every section
reads, ``sections`` renders the body, ``plots`` turns update lines into columns and figures
(``figures`` draws them with matplotlib, ``html`` escapes and lays out). May import ``record``,
``config`` and ``errors``; never ``algo``, ``run``, ``review`` or ``sweep``.
"""

"""The Streamlit review app: a reviewer reads a run's record and signs it off.

``app`` is the Streamlit script (pages in ``review_page`` and ``sweeps_page``, charts in
``charts``); ``runs`` and ``frames`` turn run folders into summaries and tables without
importing Streamlit, so they are tested directly; ``launch`` starts the server. May import
``record``, ``report``, ``sweep.summary``, ``config`` and ``errors``; never ``algo`` or ``run``.
"""

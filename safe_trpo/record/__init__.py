"""The audit record: the hash chain, its verification, sign-off rules, verified reads of a run.

``audit`` writes and verifies ``audit.jsonl`` (one hash-chained JSON line per event) and the
files it binds; ``signoff`` decides which sign-offs are current and writes new ones;
``run_record`` reads a run folder back only if it still verifies. This layer knows nothing of
torch or the algorithm: it handles JSON lines and file hashes, so an outside checker needs only
it. May import ``config`` and ``errors``.
"""

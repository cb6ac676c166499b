"""The shared vocabulary of auto-review, and nothing else.

Repository and pull-request references, host kinds, job records, the isolation posture
record, the error classes every layer agrees on, the one secret-value wrapper and
redaction. Every other package may import it; it imports nothing else of the project
(``tests/unit/test_import_direction.py`` holds that).
"""

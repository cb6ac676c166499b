"""The job's git workspace: hermetic git (``gitenv.py``), the checkout and its diff
(``checkout.py``), a pull request's head and base fetched into it (``pull_request.py``),
and the read/search tools confined to the clone (``confined.py``). Nothing from the
repository is executed. See docs/REVIEW-WORKSPACE.md.
"""

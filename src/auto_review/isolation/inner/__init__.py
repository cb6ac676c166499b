"""What runs inside the container: the entry point (``python -m
auto_review.isolation.inner.entry``) and the self-check of the boundary it runs in.
"""

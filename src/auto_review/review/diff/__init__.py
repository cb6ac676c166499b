"""The diff model: a streaming unified-diff parser over bytes (``model.py``) and the lines
a review may comment on, with each forge's comment positions (``positions.py``).
"""

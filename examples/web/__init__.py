"""streamtap's web example: an answer streamed word by word to the browser (see app.py)."""

"""`streamtap run`: instrument a program without editing it.

The command (`command.py`) checks its flags with the same validation `instrument()` uses, then
replaces itself with the program (exec), with `boot/` first on PYTHONPATH. Every Python process
started from there runs `boot/sitecustomize.py`, which chains to the user's own sitecustomize and
waits for the program to import `openai`: only then is streamtap imported and the SDK
instrumented (`child.py`), with the options and the events file passed in the environment. A
program that never imports openai pays for one finder on `sys.meta_path` and nothing else.
"""

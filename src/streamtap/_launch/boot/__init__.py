"""The directory `streamtap run` puts first on PYTHONPATH: it holds only `sitecustomize`.

(This file makes it a package so that it ships in the wheel like any other module; nothing
imports it.)
"""

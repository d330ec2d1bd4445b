"""The shell around the machine: patching the openai SDK, proxies and drivers, protocol adapters,
recovery, the stall watchdog and the summary event. See docs/architecture.md.
"""

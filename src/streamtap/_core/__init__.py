"""The stream machine: pure, protocol-neutral (never imports openai, httpx or pydantic).

Segmenting, token counting, timing, lanes and the summary, what an ended body or a failure
means, and resume decisions. See docs/architecture.md.
"""

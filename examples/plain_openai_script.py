"""A plain OpenAI script: it never imports streamtap.

Run it as is, or instrumented with no edit:

    streamtap run -- python examples/plain_openai_script.py "Why do streams need buffering?"

It reads OPENAI_BASE_URL and OPENAI_API_KEY from the environment (the SDK's own variables) and
OPENAI_MODEL for the model (default gpt-4o-mini), and prints the answer as it streams.
"""

from __future__ import annotations

import os
import sys

import openai


def main() -> int:
    question = " ".join(sys.argv[1:]) or "In two sentences, why do streamed answers need buffering?"
    client = openai.OpenAI()
    stream = client.chat.completions.create(
        model=os.environ.get("OPENAI_MODEL", "gpt-4o-mini"),
        messages=[{"role": "user", "content": question}],
        stream=True,
    )
    for chunk in stream:
        if chunk.choices:
            print(chunk.choices[0].delta.content or "", end="", flush=True)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())

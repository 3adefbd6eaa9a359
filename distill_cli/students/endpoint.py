"""The `endpoint` student: any Anthropic- or OpenAI-compatible endpoint and model.

A model fine-tuned elsewhere and served by vLLM or Ollama, or a cheaper hosted
model: `build-student --kind endpoint --base-url URL --model NAME
[--endpoint-api anthropic|openai] [--api-key-env NAME]`. It is an LLM student
(few_shot.LLMStudent) whose prompt is the teacher's instructions, with no
demonstrations unless `--shots` asks for some: a fine-tuned model has learned
them. The spec records the base URL, the API shape and the *name* of the
environment variable holding the key, never the key.

For the OpenAI shape, the base URL is the one the OpenAI SDK would take
(`http://localhost:11434/v1`); requests go to `{base_url}/chat/completions`.
"""

from __future__ import annotations

from distill_cli.students import few_shot
from distill_cli.students.base import LOADERS

LOADERS["endpoint"] = few_shot._load

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
A local OpenAI-shaped server often takes no key: unless --api-key-env names one,
the student calls without a key when OPENAI_API_KEY is unset.
"""

from __future__ import annotations

import pyarrow as pa

from distill_cli.students import few_shot
from distill_cli.students.base import StudentSpec
from distill_cli.students.training import BuildContext


def build(ctx: BuildContext):
    """The endpoint's model, measured on the dev fold: (spec, rows, spent, notes)."""
    return few_shot.build_llm(
        ctx,
        api=ctx.endpoint_api,
        default_key_env="OPENAI_API_KEY" if ctx.endpoint_api == "openai" else "ANTHROPIC_API_KEY",
        key_required=not (ctx.endpoint_api == "openai" and not ctx.api_key_env),
        default_shots=0,
    )


def load(spec: StudentSpec, table: pa.Table, path) -> few_shot.LLMStudent:
    return few_shot.load(spec, table, path)

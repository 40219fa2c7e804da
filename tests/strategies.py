"""The suite's generators, for any test to reuse: valid packs in the agent's format, valid
policies (as rule text through the real parser), usage snapshots, and cases placed near a
policy's limits. They live in `policy_engine.verify.strategies` because `policy verify` runs
them against users' policies; this module is the test suite's door to them."""

from policy_engine.verify.strategies import PackSizes, PolicySpec, StageSpec, cases, ladders, packs, policy_specs, requests, stage_specs, usage_snapshots

__all__ = ["PackSizes", "PolicySpec", "StageSpec", "cases", "ladders", "packs", "policy_specs", "requests", "stage_specs", "usage_snapshots"]

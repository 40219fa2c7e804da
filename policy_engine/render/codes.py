"""Render error codes (R1xx): code -> (title, how to fix)."""

from __future__ import annotations

CODES: dict[str, tuple[str, str]] = {
    "R101": (
        "knowledge pack directory missing",
        "pass the directory the agent uses (data/meta/index), holding the five *_pack.json files",
    ),
    "R102": (
        "knowledge pack file missing",
        "rebuild the knowledge pack (the agent's build-knowledge-pack) or copy the missing file",
    ),
    "R103": (
        "knowledge pack file malformed",
        "the file must be a JSON object of the shape the agent writes; see the JSON Pointer",
    ),
    "R104": ("idea spec malformed", "an idea spec is a JSON object with idea_id, hypothesis, theme_tags, target, ..."),
    "R105": ("unknown prompt template", "use a registered template name, e.g. agent_envelope"),
    "R106": (
        "template file unreadable",
        "the template must be a readable UTF-8 JSON file; fix the JSON at the position shown",
    ),
    "R107": (
        "template does not match the template schema",
        "see `policy schema template` and the shipped agent_envelope.template.json; the JSON Pointer shows where",
    ),
    "R108": (
        "template inconsistent",
        "an entry takes one source; count names a sibling list entry; copy and list need a part with a file; keys appear once",
    ),
    "R109": (
        "knowledge value of the wrong type for the template",
        "a key the template matches by name holds a string; one matched by overlap holds a list of strings",
    ),
}

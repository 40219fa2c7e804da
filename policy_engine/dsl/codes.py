"""Every rule-file diagnostic code, with its title and how to fix it. docs/rules-reference.md
lists each one (a test checks)."""

from __future__ import annotations

CODES: dict[str, tuple[str, str]] = {
    "E101": ("unexpected character", "remove it; strings use double quotes"),
    "E102": ("unexpected end of file", "finish the statement or close the `{` block"),
    "E103": ("unexpected word or symbol", "follow the statement's form in docs/rules-reference.md"),
    "E104": ("rule file too large", "split it into several files joined with include"),
    "E105": ("nesting too deep", "flatten nested conditions and `when` blocks"),
    "E106": ("not a text file", "save the rule file as UTF-8 text, without NUL bytes"),
    "E107": ("block never closed", "add `}` after the block's last statement"),
    "E201": (
        "unknown metric",
        "use request_prompt, request_completion, batch_total, day_total, request_usd, batch_usd or day_usd",
    ),
    "E202": ("wrong unit", "token metrics take `N tokens`, USD metrics take `$N`"),
    "E203": ("value out of range", "limits, budgets and counts must be positive (a reserve may be 0)"),
    "E204": ("ratio out of range", "factors, shares and lane ratios must be in (0, 1]"),
    "E205": ("duplicate", "each setting, rule name, stage pool and condition name appears once per file"),
    "E206": ("steps do not strictly decrease", "list a stage's steps from the largest to the smallest"),
    "E207": ("unknown pool", "use subcategories, datasets, fields or operators"),
    "E208": ("unknown tokenizer", "use a tiktoken encoding (cl100k_base, o200k_base) or a model tiktoken knows"),
    "E209": ("explore floor larger than top-k", "lower the floor or raise the pool's explore top-k"),
    "E210": ("lane ratios do not add up to 1", "exploit + explore must equal 100%"),
    "E211": ("price missing", "USD limits need `price` for the model named by `pricing model`"),
    "E212": (
        "unknown attribute",
        "guards test region, universe, delay, instrument_type, query, idea_id, tags or <pool>[.<lane>].count",
    ),
    "E213": (
        "guard value has the wrong type",
        "compare numbers with numbers and text with text; `contains` is for tags",
    ),
    "E214": ("not a whole number", "token counts, candidate counts and micro-dollar amounts are whole numbers"),
    "E215": ("percent not allowed here", "write a plain number; percentages are for ratios"),
    "E216": ("tokenizer missing", 'every policy names its tokenizer: tokenizer tiktoken "o200k_base"'),
    "E217": ("unknown prompt template", "use a registered template such as agent_envelope"),
    "E218": (
        "not allowed inside `when`",
        "a condition may change limits, ladder stages, top-k, the floor, the reserve and the completion budget",
    ),
    "E219": ("unknown lane", "use exploit or explore"),
    "E220": ("too many steps in a stage", "a stage has at most 32 steps; each step is one rung of the ladder"),
    "E221": ("too many conditions", "a policy has at most 64 `when` conditions; merge them with `or`"),
    "W201": (
        "explore top-k of 0 under an explore floor",
        "raise the pool's explore top-k to the floor, or set `explore floor 0`",
    ),
    "E301": ("include not found", "the path is relative to the including file"),
    "E302": ("include leaves the policy directory", "keep included files inside the policy's root directory"),
    "E303": ("absolute include path", "write the path relative to the including file"),
    "E304": ("include cycle", "remove one of the includes that form the cycle"),
    "E305": ("includes nested too deeply", "flatten the include chain"),
    "E306": ("no policy file", "give a .policy file, or a directory with main.policy (or .policy files)"),
    "E307": ("cannot read rule file", "check the path and its permissions"),
    "E308": ("repeated include", "a file includes another file once; remove the repeated include"),
    "E309": ("too many included files", "a policy includes at most 64 files; merge small rule files"),
    "E310": ("included files too large", "a policy's files hold at most 2 MiB in all"),
    "E401": (
        "invalid upstream config value",
        "fix the value in the JSON config; the importer never substitutes defaults",
    ),
    "E402": ("invalid upstream config file", "give the agent's llm_budget.json (and optionally retrieval_budget.json)"),
}

"""Prompts, grammar and schema shared by the LLM tests and benchmarks/bench_llm.py."""

# A small grammar of timm-like stages; every repetition bounded so a weak model always finishes.
STAGE_GRAMMAR = r'''root ::= block ("-" block){0,3}
block ::= "ir_r" [1-4] "_k" ("3" | "5") "_e" ("1" | "4" | "6") "_c" ("16" | "24" | "32" | "64")
'''
STAGE_RE = r"ir_r[1-4]_k[35]_e[146]_c(16|24|32|64)(-ir_r[1-4]_k[35]_e[146]_c(16|24|32|64)){0,3}"
DIAGNOSIS_SCHEMA = {"type": "object", "properties": {"problem": {"type": "string", "maxLength": 40},
                                                     "modification": {"type": "string", "maxLength": 40}},
                    "required": ["problem", "modification"]}
PROMPT = [{"role": "system", "content": "You design CNN stages as timm block strings."},
          {"role": "user", "content": "Best so far: ir_r2_k3_e6_c24-ir_r1_k5_e6_c32 (71.5%). Propose a better one."}]
DIAG_PROMPT = [{"role": "user", "content": "The last network overfit. As JSON, name the problem and the modification."}]

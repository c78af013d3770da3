"""Architecture DSL: search spaces, their grammars, parsers, canonical forms and hashes."""
from llmnas_local.dsl.base import BaseSpace, Constraints, DslError, SemanticError
from llmnas_local.dsl.registry import get_space, list_spaces, register_space

__all__ = ["BaseSpace", "Constraints", "DslError", "SemanticError", "get_space", "list_spaces", "register_space"]

"""Prompt text lives here and only here: templates (package data) and the code that fills them."""
from llmnas_local.prompts.render import (PromptContext, editor_messages, generator_messages, improver_messages,
                                         load_template, mutator_messages)

__all__ = ["PromptContext", "editor_messages", "generator_messages", "improver_messages", "load_template",
           "mutator_messages"]

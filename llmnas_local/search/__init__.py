"""The search loop and the history view proposers read."""
from llmnas_local.search.history import HistoryView
from llmnas_local.search.study import PendingTrial, Search, SearchStalled, make_run_id

__all__ = ["HistoryView", "PendingTrial", "Search", "SearchStalled", "make_run_id"]

"""The README's two set-up commands stay true: CI runs the test command verbatim."""
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    block = text.split("```bash", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line.strip() and not line.startswith("#")]


def test_readme_starts_with_two_commands_and_ci_runs_the_test_command_verbatim():
    install_and_search, install_and_test = _readme_commands()
    assert install_and_search.endswith("llmnas search --budget 10")
    assert install_and_test.endswith("python -m pytest -q")
    assert install_and_test in (REPO / ".ci" / "run").read_text().splitlines()
